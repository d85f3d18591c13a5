"""Pinned `# requirements:` headers, generated from requirements.lock.

Windmill resolves a Python script's dependencies on the server. A `# requirements:`
block at the top of the script replaces its import inference (relative imports
included: backend/parsers/windmill-parser-py-imports), so every dependency job, on
deploy or when an imported library changes, resolves exactly these pins.

Each script Windmill runs (a `.py` with `main`, or a flow inline script) gets the
closure of what it imports, following `from f.dodo.lib.x import y` into the library,
pinned to the versions in requirements.lock: the versions the tests ran with.

    python -m tools.pins          # report scripts whose header drifted
    python -m tools.pins --write [file...]  # rewrite the headers (all, or those files)
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# requirements:"
_SPEC_LINE = re.compile(r"^#\s?(\S+)\s*$")  # Windmill's own pattern for a requirement line


def read_lock(root: Path = ROOT) -> dict[str, str]:
    """canonical name -> `name==version` line of requirements.lock."""
    pins = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            pins[canonicalize_name(line.split("==", 1)[0].split("[", 1)[0])] = line
    return pins


def module_imports(path: Path) -> set[str]:
    """Dotted names imported anywhere in the module, function-level (lazy) imports
    included: Windmill infers from module-level imports only, and a `# requirements:`
    block replaces the inference, so a lazy import is installed only if pinned here."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            # `from f.dodo.lib import events` imports the module f/dodo/lib/events.py
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def third_party_modules(path: Path, root: Path = ROOT, seen: set | None = None) -> set[str]:
    """Top-level third-party modules a script needs, through its `f.` library imports."""
    seen = set() if seen is None else seen
    found = set()
    for name in module_imports(path):
        top = name.split(".", 1)[0]
        if top == "f":
            target = root.joinpath(*name.split(".")).with_suffix(".py")
            if target.is_file() and target not in seen:
                seen.add(target)
                found |= third_party_modules(target, root, seen)
        elif top not in sys.stdlib_module_names and top != "__future__":
            found.add(top)
    return found


def declared_extras(root: Path = ROOT) -> dict[str, frozenset]:
    """Extras requirements.in asks for (e.g. pydantic[email]); none today."""
    extras = {}
    for line in (root / "requirements.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            extras[canonicalize_name(req.name)] = frozenset(req.extras)
    return extras


def _closure(dists: set[str], extras: dict[str, frozenset]) -> set[str]:
    """Every distribution needed to install `dists`, markers evaluated for this Python."""
    env = default_environment()
    todo = [(canonicalize_name(d), extras.get(canonicalize_name(d), frozenset())) for d in dists]
    done: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            wanted = extras | {""}
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in wanted):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {name for name, _ in done}


def required_pins(path: Path, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(sorted pinned lines for the script, problems) from requirements.lock."""
    owners = metadata.packages_distributions()
    lock = read_lock(root)
    problems, dists = [], set()
    for module in sorted(third_party_modules(path, root)):
        if module not in owners:
            problems.append(f"{_rel(path, root)}: imports {module!r}, which no installed package provides")
            continue
        dists.update(owners[module])
    pins = []
    for name in sorted(_closure(dists, declared_extras(root))):
        if name in lock:
            pins.append(lock[name])
        else:
            problems.append(f"{_rel(path, root)}: needs {name}, which requirements.lock does not pin")
    return sorted(pins, key=str.lower), problems


def current_pins(text: str) -> list[str] | None:
    """The requirement lines of a script's header block, as Windmill reads them."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("#requirements:", "# requirements:")):
            block = []
            for spec in lines[i + 1 :]:
                match = _SPEC_LINE.match(spec)
                if not match:
                    break
                block.append(match.group(1))
            return block
    return None


def with_header(text: str, pins: list[str]) -> str:
    """The script text with its header block replaced (or added at the top)."""
    header = "\n".join([HEADER, *(f"# {p}" for p in pins)]) + "\n"
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(("#requirements:", "# requirements:")):
            end = i + 1
            while end < len(lines) and _SPEC_LINE.match(lines[end].rstrip("\n")):
                end += 1
            return "".join(lines[:i]) + header + "".join(lines[end:])
    return header + text


def runnable_scripts(root: Path = ROOT) -> list[Path]:
    """Scripts Windmill locks and runs: entry scripts with main, and flow inline scripts."""
    found = []
    for path in sorted((root / "f").rglob("*.py")):
        if any(part.endswith("__flow") for part in path.parts):
            found.append(path)  # inline flow step or preprocessor
        elif re.search(r"^def main\(", path.read_text(), re.M):
            found.append(path)
    return found


def check(root: Path = ROOT) -> list[str]:
    problems = []
    for path in runnable_scripts(root):
        pins, issues = required_pins(path, root)
        problems += issues
        if current_pins(path.read_text()) != pins:
            problems.append(
                f"{_rel(path, root)}: '# requirements:' header differs from requirements.lock "
                "(run: python -m tools.pins --write)"
            )
    return problems


def write(root: Path = ROOT, paths: list[Path] | None = None) -> list[Path]:
    changed = []
    for path in paths or runnable_scripts(root):
        pins, _ = required_pins(path, root)
        text = path.read_text()
        new = with_header(text, pins)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--write" in args:
        chosen = [Path(a).resolve() for a in args if a != "--write"]
        for path in write(ROOT, chosen or None):
            print(f"updated {_rel(path, ROOT)}")
    problems = check()
    print("\n".join(problems) or "pins: every script header matches requirements.lock")
    sys.exit(1 if problems else 0)
