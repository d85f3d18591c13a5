"""The bundle is valid for Windmill, checked with Windmill's own tools (tools/lint.py),
plus the properties the deployment relies on. Negative tests break a copy of the tree
to prove each check can fail."""

import shutil
from pathlib import Path

import pytest
import yaml

from tools import lint, pins

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "f/dodo/webhook__flow/flow.yaml"
TRIGGER = ROOT / "f/dodo/webhook.http_trigger.yaml"


@pytest.mark.parametrize("name", list(lint.CHECKS))
def test_tree_has_no_diagnostics(name):
    assert lint.CHECKS[name](ROOT) == []


def test_checks_cover_every_yaml_file():
    names = {p.name for p in lint.yaml_files(ROOT)}
    assert {"flow.yaml", "webhook.http_trigger.yaml"} <= names


def test_http_route_keeps_raw_body_and_answers_async():
    trigger = yaml.safe_load(TRIGGER.read_text())
    assert trigger["raw_string"] is True  # the signature covers the exact bytes
    assert trigger["request_type"] == "async"
    assert trigger["wrap_body"] is False
    assert (trigger["script_path"], trigger["is_flow"], trigger["http_method"]) == ("f/dodo/webhook", True, "post")


def test_entry_flow_has_its_preprocessor_and_inputs():
    flow = yaml.safe_load(FLOW.read_text())
    pre = flow["value"]["preprocessor_module"]
    assert pre["id"] == "preprocessor"
    assert (pre["value"]["type"], pre["value"]["language"]) == ("rawscript", "python3")
    assert (FLOW.parent / pre["value"]["content"].removeprefix("!inline ")).is_file()
    schema = flow["schema"]
    assert schema["required"] == ["event"]
    assert schema["properties"]["event"]["type"] == "object"
    assert schema["properties"]["webhook_id"]["type"] == "string"
    assert all(p.get("description") for p in schema["properties"].values())
    steps = {m["id"]: m["value"] for m in flow["value"]["modules"]}
    assert steps["record"]["path"] == "f/dodo/record_delivery"  # one SQL statement, no Python process
    assert steps["normalize_record"]["path"] == "f/dodo/store_event"  # UI runs, replays, rejected events


def test_sync_settings_match_the_layout():
    settings = yaml.safe_load((ROOT / "wmill.yaml").read_text())
    assert settings["nonDottedPaths"] is True  # flows live in <name>__flow/
    assert settings["includeTriggers"] is True and settings["skipSecrets"] is True


def test_preprocessor_pins_come_from_requirements_lock():
    lock = set(pins.read_lock(ROOT).values())
    script = ROOT / "f/dodo/webhook__flow/preprocessor.py"
    header = pins.current_pins(script.read_text())
    # a verified delivery is normalised in the preprocessor: its block is the pydantic models'
    # packages, pinned (verification itself is the standard library); the driver is not there
    assert header and set(header) <= lock and any(h.startswith("pydantic==") for h in header)
    assert not any(h.startswith("psycopg") for h in header)
    assert not any("preprocessor.py" in p for p in lint.check_pins(ROOT))  # and that is what the lock gives


# --- negative tests: each check catches a broken copy ---------------------------------

@pytest.fixture
def tree(tmp_path):
    shutil.copytree(ROOT / "f", tmp_path / "f")
    for name in ("wmill.yaml", "requirements.in", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_yaml_check_catches_a_broken_flow(tree):
    _edit(tree / "f/dodo/webhook__flow/flow.yaml", "type: script", "type: scriptt")
    problems = lint.check_yaml(tree)
    assert any("webhook__flow/flow.yaml" in p for p in problems)


def test_yaml_check_catches_a_trigger_without_raw_string(tree):
    _edit(tree / "f/dodo/webhook.http_trigger.yaml", "raw_string: true\n", "")
    assert any("raw_string" in p for p in lint.check_yaml(tree))


def test_wmill_lint_catches_a_broken_flow(tree):
    _edit(tree / "f/dodo/webhook__flow/flow.yaml", "type: script", "type: scriptt")
    assert lint.check_wmill_lint(tree)


def test_schema_check_catches_drift(tree):
    (tree / "f/dodo/probe.py").write_text("def main(a: str, b: int = 1, c: list | None = None):\n    return a\n")
    (tree / "f/dodo/probe.script.yaml").write_text(
        "summary: probe\ndescription: ''\nkind: script\nschema:\n  type: object\n  properties:\n"
        "    a: {type: string}\n    b: {type: string}\n  required: [a, b]\n"
    )
    problems = "\n".join(lint.check_schemas(tree))
    assert "probe.script.yaml" in problems
    assert "main arguments" in problems  # c is missing from the schema
    assert "schema required" in problems  # b has a default
    assert "b: type is 'string', main says 'integer'" in problems


def test_schema_check_catches_a_script_without_metadata(tree):
    (tree / "f/dodo/bare.py").write_text("def main(x: int):\n    return x\n")
    (tree / "f/dodo/lib/helper.py").write_text('"""A library module."""\n')
    problems = lint.check_schemas(tree)
    assert any("bare.py: no bare.script.yaml" in p for p in problems)
    assert any("lib/helper.py: no helper.script.yaml" in p for p in problems)  # a push would write one


def test_schema_check_catches_a_library_schema_with_arguments(tree):
    meta = tree / "f/dodo/lib/money.script.yaml"
    meta.write_text(meta.read_text().replace("properties: {}", "properties: {x: {type: string}}"))
    assert any("money.script.yaml: schema properties ['x'] != main arguments []" in p
               for p in lint.check_schemas(tree))


def test_flow_check_catches_a_v1_preprocessor(tree):
    _edit(tree / "f/dodo/webhook__flow/preprocessor.py", "def preprocessor(event: dict)", "def preprocessor(body: dict)")
    problems = lint.check_flows(tree)
    assert any("def preprocessor(event)" in p for p in problems)


def test_flow_check_catches_a_missing_inline_file_and_unknown_step_inputs(tree):
    (tree / "f/dodo/webhook__flow/preprocessor.py").unlink()
    _edit(tree / "f/dodo/webhook__flow/flow.yaml", "webhook_id:\n            type: javascript", "webhookid:\n            type: javascript")
    problems = "\n".join(lint.check_flows(tree))
    assert "content file preprocessor.py is missing" in problems
    assert "unknown inputs ['webhookid']" in problems


def test_pins_check_catches_drift_from_requirements_lock(tree):
    _edit(tree / "f/dodo/mark_failed.py", "# psycopg2-binary==2.9.13", "# psycopg2-binary==2.9.0")
    assert any("mark_failed.py" in p for p in lint.check_pins(tree))
    pins.write(tree, [tree / "f/dodo/mark_failed.py"])
    assert not any("mark_failed.py" in p for p in lint.check_pins(tree))
