"""What `wmill sync push` should deploy, read from the bundle's files, and the push itself.

`expected_items(root)` derives, independently of the CLI, every item the push must
create from the files in the repository: folders (f/<name>/folder.meta.yaml), scripts
(<path>.py with its .script.yaml), flows (<path>__flow/flow.yaml with `!inline` files
resolved), schedules, triggers, variables and root-level resource types.
`deployed_items(ws)` reads the same view from the stand-in's workspace, and
`mismatches(expected, deployed)` lists every difference, so a missing, extra or altered
item fails the test by name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.windmill_standin import Workspace

REPO = Path(__file__).resolve().parent.parent
WMILL = REPO / "node_modules" / ".bin" / "wmill"

# Extensions the CLI pushes as scripts, and the language it infers (defaultTs: bun).
SCRIPT_LANGUAGES = {
    ".py": "python3", ".pg.sql": "postgresql", ".my.sql": "mysql", ".sql": None,
    ".ts": "bun", ".js": None, ".sh": "bash", ".go": "go", ".gql": "graphql",
    ".ps1": "powershell", ".php": "php", ".rs": "rust", ".cs": "csharp", ".nu": "nu",
    ".java": "java", ".rb": "ruby",
}
# Keys the CLI strips from a local file before sending it.
_LOCAL_ONLY = {"extra_perms", "has_on_behalf_of", "on_behalf_of", "has_permissioned_as"}
_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", "node_modules", ".venv"}

Items = dict[tuple[str, str], dict[str, Any]]


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML read like the CLI's YAML 1.2 parser: no yes/no/on/off booleans, no dates."""


_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers
         if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))
_Yaml12Loader.add_constructor(  # an unquoted `!inline x` reads as the string the CLI sees
    "!inline", lambda loader, node: "!inline " + loader.construct_scalar(node))


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)


def _glob_regex(pattern: str) -> re.Pattern:
    """wmill.yaml patterns: `**` any string, `*` any string up to '/'."""
    parts = re.split(r"(\*\*|\*)", pattern)
    body = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(f"^{body}$")


def _selected(root: Path) -> list[str]:
    """Relative paths under f/ that wmill.yaml's includes/excludes let through."""
    conf = load_yaml(root / "wmill.yaml") or {}
    includes = [_glob_regex(p) for p in conf.get("includes") or ["f/**"]]
    excludes = [_glob_regex(p) for p in conf.get("excludes") or []]
    out = []
    for path in sorted((root / "f").rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not _IGNORED_DIRS & set(path.parts) \
                and any(rx.match(rel) for rx in includes) \
                and not any(rx.match(rel) for rx in excludes):
            out.append(rel)
    return out


def _script_ext(rel: str) -> str | None:
    name = rel.rsplit("/", 1)[-1]
    return next((e for e in sorted(SCRIPT_LANGUAGES, key=len, reverse=True)
                 if name.endswith(e)), None)


def _in_flow_dir(rel: str) -> bool:
    return any(p.endswith(("__flow", ".flow")) for p in rel.split("/")[:-1])


def _resolve_inline(node: Any, flow_dir: Path) -> None:
    """Replace `!inline <file>` content and lock of every rawscript, as the CLI does."""
    if isinstance(node, list):
        for child in node:
            _resolve_inline(child, flow_dir)
    elif isinstance(node, dict):
        if node.get("type") == "rawscript":
            for key in ("content", "lock"):
                value = node.get(key)
                if isinstance(value, str) and value.startswith("!inline "):
                    node[key] = (flow_dir / value.split(" ", 1)[1].strip()).read_text(
                        encoding="utf-8")
        for child in node.values():
            _resolve_inline(child, flow_dir)


def _without_local_keys(obj: dict) -> dict:
    return {k: v for k, v in (obj or {}).items() if k not in _LOCAL_ONLY}


def expected_items(root: Path = REPO) -> Items:
    """Every item the push must deploy, with the content it must carry."""
    conf = load_yaml(root / "wmill.yaml") or {}
    items: Items = {}
    for rel in _selected(root):
        path = root / rel
        name = rel.rsplit("/", 1)[-1]
        if re.fullmatch(r"f/[^/]+/folder\.meta\.yaml", rel):
            items[("folder", rel.split("/")[1])] = _without_local_keys(load_yaml(path))
        elif name == "flow.yaml" and _in_flow_dir(rel):
            flow = _without_local_keys(load_yaml(path))
            _resolve_inline(flow.get("value"), path.parent)
            flow_path = re.sub(r"(__flow|\.flow)$", "", rel.rsplit("/", 1)[0])
            items[("flow", flow_path)] = flow
        elif _in_flow_dir(rel):
            continue  # a flow's inline script, part of the flow
        elif (ext := _script_ext(rel)) is not None:
            items[("script", rel[:rel.index(".")])] = _expected_script(root, rel, ext)
        elif m := re.fullmatch(r"(.+)\.(schedule|variable|\w+_trigger)\.yaml", rel):
            kind = m.group(2)
            if (kind == "schedule" and not conf.get("includeSchedules")) or (
                    kind.endswith("_trigger") and not conf.get("includeTriggers")) or (
                    kind == "variable" and conf.get("skipVariables")):
                continue
            items[(kind, m.group(1))] = _without_local_keys(load_yaml(path))
    if not conf.get("skipResourceTypes"):  # pushed from the root whatever the includes
        for path in sorted(root.glob("*.resource-type.yaml")):
            name = path.name.removesuffix(".resource-type.yaml")
            items[("resource_type", name)] = _without_local_keys(load_yaml(path))
    return items


def _expected_script(root: Path, rel: str, ext: str) -> dict:
    base = rel[:rel.index(".")]
    script = {"content": (root / rel).read_text(encoding="utf-8"), "summary": "",
              "description": "", "kind": "script"}
    if SCRIPT_LANGUAGES[ext]:
        script["language"] = SCRIPT_LANGUAGES[ext]
    meta_path = root / f"{base}.script.yaml"
    if meta_path.exists():
        meta = _without_local_keys(load_yaml(meta_path))
        lock = meta.get("lock")
        if isinstance(lock, str) and lock.startswith("!inline "):
            meta["lock"] = (root / lock.split(" ", 1)[1].strip()).read_text(encoding="utf-8")
        script.update({k: v for k, v in meta.items() if v is not None})
    return script


def deployed_items(ws: Workspace) -> Items:
    """The stand-in workspace in the same (kind, key) -> object view."""
    items: Items = {("script", p): s for p, s in ws.scripts.items()}
    for kind, objects in ws.items.items():
        items.update({(kind, key): obj for key, obj in objects.items()})
    return items


def mismatches(expected: Items, deployed: Items) -> list[str]:
    """Human-readable differences; empty when every item arrived exactly as expected."""
    out = [f"missing: {k} {key}" for k, key in sorted(expected.keys() - deployed.keys())]
    out += [f"unexpected: {k} {key}" for k, key in sorted(deployed.keys() - expected.keys())]
    for item in sorted(expected.keys() & deployed.keys()):
        want, got = expected[item], deployed[item]
        for field in sorted(want):
            if got.get(field, _ABSENT) != want[field]:
                out.append(f"altered: {item[0]} {item[1]}: field {field!r}")
    return out


_ABSENT = object()


def copy_bundle(dest: Path, root: Path = REPO) -> Path:
    """The files a deploy job checks out: wmill.yaml, f/, root resource types, lock file."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ["wmill.yaml", "wmill-lock.yaml",
                 *(p.name for p in root.glob("*.resource-type.yaml"))]:
        if (root / name).exists():
            shutil.copy2(root / name, dest / name)
    shutil.copytree(root / "f", dest / "f", ignore=shutil.ignore_patterns(*_IGNORED_DIRS))
    return dest


def wmill_push(cwd: Path, base_url: str, workspace: str, token: str,
               home: Path) -> subprocess.CompletedProcess:
    """`wmill sync push` with a private HOME and config dir, nothing from the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMILL_", "WM_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), NO_COLOR="1",
               CI="1")
    return subprocess.run(
        [str(WMILL), "sync", "push", "--yes", "--base-url", base_url,
         "--workspace", workspace, "--token", token, "--config-dir", str(home / "wmill")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
