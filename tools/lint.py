"""`make lint`: check the bundle with Windmill's own tools, offline.

- check_yaml: every flow, trigger and schedule YAML passes windmill-yaml-validator.
- check_schemas: every script's `.script.yaml` schema matches the signature that
  windmill-parser-wasm-py infers from its `main` (names, types, required); for a
  PostgreSQL script (`.pg.sql`) the arguments windmill-parser-wasm-regex `parse_sql`
  infers, after the `database` resource (postgresql) that windmill-cli adds first.
- check_flows: `!inline` files exist, the preprocessor takes `event` (Windmill's v2
  trigger format), script steps call existing scripts with their real parameters.
- check_pins: `# requirements:` headers match requirements.lock (tools.pins).
- check_wmill_lint: `wmill lint` on the tree.

Each check returns a list of diagnostics ("<file>: <problem>"); empty means clean.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tools import pins

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "windmill_check.mjs"
# The validator parses YAML itself and does not know the CLI's `!inline` tag.
IGNORED_DIAGNOSTIC = re.compile(r"unknown tag <!inline>")


def _node(mode: str, files: list[Path], root: Path) -> list[dict]:
    if not files:
        return []
    proc = subprocess.run(
        ["node", str(HELPER), mode, *map(str, files)],
        cwd=ROOT,  # node_modules lives here, whatever tree is checked
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"windmill_check.mjs {mode} failed: {proc.stderr.strip()}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _rel(path: str | Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def yaml_files(root: Path = ROOT) -> list[Path]:
    tree = root / "f"
    return sorted(
        [*tree.rglob("flow.yaml"), *tree.rglob("*.schedule.yaml"), *tree.rglob("*_trigger.yaml")]
    )


def check_yaml(root: Path = ROOT) -> list[str]:
    problems = []
    for result in _node("yaml", yaml_files(root), root):
        name = _rel(result["file"], root)
        if result["target"] is None:
            problems.append(f"{name}: not a flow, schedule or trigger file name")
        for error in result["errors"]:
            problems.append(f"{name}: {error['path'] or '/'} {error['message']} {error.get('params') or ''}")
        for diag in result["diagnostics"]:
            if not IGNORED_DIAGNOSTIC.search(diag["message"]):
                problems.append(f"{name}: {diag['message']}")
    return problems


def _expected_property(typ) -> dict:
    """The JSON-schema fragment Windmill derives from one inferred argument type."""
    if isinstance(typ, str):
        return {
            "int": {"type": "integer"},
            "float": {"type": "number"},
            "bool": {"type": "boolean"},
            "datetime": {"type": "string", "format": "date-time"},
            "bytes": {"type": "string", "contentEncoding": "base64"},
            "email": {"type": "string", "format": "email"},
            "sql": {"type": "string", "format": "sql"},
        }.get(typ, {})
    kind, inner = next(iter(typ.items()))
    if kind == "str":
        return {"type": "string", **({"enum": inner} if inner else {})}
    if kind == "object":
        return {"type": "object"}
    if kind == "list":
        return {"type": "array"}
    if kind == "resource":
        return {"type": "object", "format": f"resource-{inner}"}
    return {}


def script_files(root: Path = ROOT, pattern: str = "*.py") -> list[Path]:
    """Standalone scripts (flow inline scripts have no .script.yaml)."""
    return sorted(
        p for p in (root / "f").rglob(pattern) if not any(part.endswith("__flow") for part in p.parts)
    )


SQL_SUFFIX = ".pg.sql"  # windmill-cli: language postgresql <-> <name>.pg.sql (+ <name>.script.yaml)


def sql_signatures(files: list[Path], root: Path) -> list[dict]:
    """Each .pg.sql script's inputs as `wmill script generate-metadata` infers them
    (windmill-cli 1.819.0 inferSchema, language postgresql: `database` first, a postgresql
    resource, then parse_sql's arguments)."""
    out = []
    for result in _node("sql", files, root):
        main = result["main"]
        if "error" not in main:
            main = dict(main, args=[{"name": "database", "typ": {"resource": "postgresql"}, "has_default": False},
                                    *main["args"]])
        out.append({"file": result["file"], "main": main})
    return out


def _script_meta(path: Path) -> Path:
    name = path.name.removesuffix(SQL_SUFFIX) if path.name.endswith(SQL_SUFFIX) else path.stem
    return path.with_name(name + ".script.yaml")


def check_sql_schemas(root: Path = ROOT) -> list[str]:
    problems = []
    for result in sql_signatures(script_files(root, "*" + SQL_SUFFIX), root):
        path = Path(result["file"])
        name = _rel(path, root)
        if "error" in result["main"]:
            problems.append(f"{name}: Windmill cannot parse it: {result['main']['error']}")
            continue
        meta_path = _script_meta(path)
        if not meta_path.is_file():
            problems.append(f"{name}: no {meta_path.name}")
            continue
        meta = yaml.safe_load(meta_path.read_text()) or {}
        if not meta.get("summary"):
            problems.append(f"{_rel(meta_path, root)}: no summary")
        if meta.get("language") not in (None, "postgresql"):
            problems.append(f"{_rel(meta_path, root)}: language {meta['language']!r}, but {name} is postgresql")
        problems += [f"{_rel(meta_path, root)}: {p}"
                     for p in compare_schema(result["main"]["args"], meta.get("schema"))]
    return problems


def check_schemas(root: Path = ROOT) -> list[str]:
    problems = []
    for result in _node("py", script_files(root), root):
        path = Path(result["file"])
        name = _rel(path, root)
        main = result["main"]
        if "error" in main:
            problems.append(f"{name}: Windmill cannot parse it: {main['error']}")
            continue
        meta_path = path.with_name(path.stem + ".script.yaml")
        if not meta_path.is_file():  # wmill sync push would write one into the checkout
            problems.append(f"{name}: no {meta_path.name}")
            continue
        meta = yaml.safe_load(meta_path.read_text()) or {}
        if not meta.get("summary"):
            problems.append(f"{_rel(meta_path, root)}: no summary")
        if main.get("auto_kind") == "lib" and not result["preprocessor"].get("has_preprocessor"):
            main = {"args": []}  # a library module: no main, an empty schema
        problems += [f"{_rel(meta_path, root)}: {p}" for p in compare_schema(main["args"], meta.get("schema"))]
        if meta.get("has_preprocessor") and not result["preprocessor"].get("args"):
            problems.append(f"{_rel(meta_path, root)}: has_preprocessor but no preprocessor(event)")
    return problems


def compare_schema(args: list[dict], schema: dict | None) -> list[str]:
    """Differences between inferred arguments and a `.script.yaml` schema."""
    if not isinstance(schema, dict):
        return ["no schema"]
    props = schema.get("properties") or {}
    problems = []
    names = [a["name"] for a in args]
    if sorted(props) != sorted(names):
        problems.append(f"schema properties {sorted(props)} != main arguments {sorted(names)}")
    required = sorted(a["name"] for a in args if not a["has_default"])
    if sorted(schema.get("required") or []) != required:
        problems.append(f"schema required {sorted(schema.get('required') or [])} != {required}")
    for arg in args:
        prop = props.get(arg["name"])
        if not isinstance(prop, dict):
            continue
        for key, want in _expected_property(arg["typ"]).items():
            if prop.get(key) != want:
                problems.append(f"{arg['name']}: {key} is {prop.get(key)!r}, main says {want!r}")
    return problems


def _inline(value: str, base: Path) -> Path | None:
    if isinstance(value, str) and value.startswith("!inline "):
        return base / value[len("!inline ") :].strip()
    return None


def _modules(flow_value: dict):
    """Every module of a flow value, nested ones included."""
    stack = list(flow_value.get("modules") or [])
    for special in ("preprocessor_module", "failure_module"):
        if flow_value.get(special):
            stack.append(flow_value[special])
    while stack:
        module = stack.pop()
        yield module
        value = module.get("value") or {}
        stack += value.get("modules") or []
        stack += value.get("default") or []
        for branch in value.get("branches") or []:
            stack += branch.get("modules") or []


def check_flows(root: Path = ROOT) -> list[str]:
    problems = []
    for flow_path in sorted((root / "f").rglob("flow.yaml")):
        name = _rel(flow_path, root)
        flow = yaml.safe_load(flow_path.read_text()) or {}
        value = flow.get("value") or {}
        pre = value.get("preprocessor_module")
        if pre and pre.get("id") != "preprocessor":
            problems.append(f"{name}: preprocessor_module must have id 'preprocessor'")
        steps_to_parse, sql_steps = [], []
        for module in _modules(value):
            mv = module.get("value") or {}
            for key in ("content", "lock"):
                target = _inline(mv.get(key), flow_path.parent)
                if target is not None and not target.is_file():
                    problems.append(f"{name}: step {module.get('id')}: {key} file {target.name} is missing")
            if mv.get("type") == "script" and str(mv.get("path", "")).startswith("f/"):
                script = root / f"{mv['path']}.py"
                sql = root / f"{mv['path']}{SQL_SUFFIX}"
                if script.is_file():
                    steps_to_parse.append((module, script))
                elif sql.is_file():
                    sql_steps.append((module, sql))
                else:
                    problems.append(f"{name}: step {module.get('id')}: script {mv['path']} does not exist")
        if pre and (pre.get("value") or {}).get("type") == "rawscript":
            target = _inline(pre["value"].get("content"), flow_path.parent)
            if target is not None and target.is_file():
                parsed = _node("py", [target], root)[0]["preprocessor"]
                names = [a["name"] for a in parsed.get("args", [])]
                if names != ["event"]:
                    problems.append(
                        f"{name}: preprocessor must be `def preprocessor(event)` (Windmill's v2 "
                        f"trigger format), found arguments {names}"
                    )
        parsed = _node("py", [s for _, s in steps_to_parse], root) + sql_signatures([s for _, s in sql_steps], root)
        for (module, _script), result in zip(steps_to_parse + sql_steps, parsed):
            args = result["main"].get("args", [])
            given = set((module["value"].get("input_transforms") or {}))
            known = {a["name"] for a in args}
            missing = {a["name"] for a in args if not a["has_default"]} - given
            if given - known:
                problems.append(f"{name}: step {module.get('id')}: unknown inputs {sorted(given - known)}")
            if missing:
                problems.append(f"{name}: step {module.get('id')}: required inputs not set {sorted(missing)}")
    return problems


def check_pins(root: Path = ROOT) -> list[str]:
    return pins.check(root)


def check_wmill_lint(root: Path = ROOT) -> list[str]:
    wmill = ROOT / "node_modules" / ".bin" / "wmill"
    proc = subprocess.run(
        [str(wmill), "lint", "--json", "--fail-on-warn"], cwd=root, capture_output=True, text=True, check=False
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [f"wmill lint: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:2000]}"]
    problems = []
    for issue in report.get("issues", []):
        for error in issue.get("errors", []) or [issue]:
            problems.append(f"wmill lint: {issue.get('path')}: {error}")
    problems += [f"wmill lint warning: {w}" for w in report.get("warnings", [])]
    if not report.get("success", False) and not problems:
        problems.append(f"wmill lint: failed (exit {report.get('exitCode')})")
    return problems


CHECKS = {
    "windmill-yaml-validator": check_yaml,
    "script schemas": check_schemas,
    "postgresql script schemas": check_sql_schemas,
    "flows": check_flows,
    "requirements pins": check_pins,
    "wmill lint": check_wmill_lint,
}


def run_all(root: Path = ROOT) -> dict[str, list[str]]:
    return {name: check(root) for name, check in CHECKS.items()}


def main() -> int:
    failed = False
    for name, problems in run_all().items():
        print(f"{'FAIL' if problems else 'ok  '} {name}")
        for problem in problems:
            print(f"     {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
