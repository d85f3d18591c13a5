"""Deployment proof: the pinned `wmill` CLI pushes the bundle to a Windmill API stand-in.

`npx wmill sync push` (npm windmill-cli, pinned in package-lock.json) runs from a fresh
copy of the bundle's files against tests/windmill_standin.py, a real HTTP server that
records every request and keeps an in-memory workspace. The test derives, from the
repository's own files, every folder, script, flow, schedule and trigger the push must
create (tests/deploy_bundle.py) and compares both sides exactly.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.deploy_bundle import (WMILL, copy_bundle, deployed_items, expected_items,
                                 mismatches, wmill_push)
from tests.windmill_standin import WindmillStandin

ROOT = Path(__file__).resolve().parent.parent

WORKSPACE = "dodo"
TOKEN = "standin-token"


def _push(wm: WindmillStandin, tmp: Path, name: str) -> tuple[str, list]:
    """Push a fresh copy of the bundle; return the CLI output and the requests it made."""
    first = len(wm.requests)
    result = wmill_push(copy_bundle(tmp / name), wm.base_url, WORKSPACE, TOKEN, tmp / "home")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"wmill sync push failed:\n{output[-4000:]}"
    return output, wm.requests[first:]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Two deploys of the same tree, each from a clean checkout, to one workspace."""
    assert WMILL.exists(), "node_modules missing: run `make setup` (npm ci)"
    tmp = tmp_path_factory.mktemp("deploy")
    with WindmillStandin(WORKSPACE, TOKEN) as wm:
        first_output, first = _push(wm, tmp, "first")
        after_first = copy.deepcopy(deployed_items(wm.ws))
        second_output, second = _push(wm, tmp, "second")
        yield {"wm": wm, "first": first, "second": second, "after_first": after_first,
               "output": first_output + second_output}


def _references(item: tuple[str, str], obj: dict):
    """(is_flow, path) of every runnable an item calls: flow steps, schedule, trigger."""
    kind, _ = item
    if kind == "schedule" or kind.endswith("_trigger"):
        yield bool(obj.get("is_flow")), obj["script_path"]
    stack = [obj.get("value")] if kind == "flow" else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in ("script", "flow") and isinstance(node.get("path"), str):
                yield node["type"] == "flow", node["path"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def test_every_runnable_the_bundle_calls_is_in_the_bundle():
    """A real server refuses an enabled schedule whose script is not deployed yet."""
    expected = expected_items()
    dangling = sorted(f"{kind} {key} -> {'flow' if is_flow else 'script'} {path}"
                      for (kind, key), obj in expected.items()
                      for is_flow, path in _references((kind, key), obj)
                      if ("flow" if is_flow else "script", path) not in expected
                      and not path.startswith("hub/"))
    assert dangling == []


def test_push_uses_only_stand_in_endpoints_with_the_token(deployment):
    wm = deployment["wm"]
    assert wm.unhandled == [], [r.line for r in wm.unhandled]
    assert wm.unauthorized == []
    called = wm.endpoints()
    for needed in ("GET /api/w/<ws>/workspaces/tarball", "POST /api/w/<ws>/scripts/create",
                   "POST /api/w/<ws>/folders/create"):
        assert needed in called, called


def test_every_item_arrived_with_the_content_of_its_files(deployment):
    expected = expected_items()
    kinds = {kind for kind, _ in expected}
    assert {"folder", "script", "flow"} <= kinds, "the bundle has no flows or scripts?"
    assert ("folder", "dodo") in expected
    assert mismatches(expected, deployment["after_first"]) == []


def test_scripts_carry_python_source_summary_and_schema(deployment):
    scripts = {key: s for (kind, key), s in deployment["after_first"].items()
               if kind == "script"}
    entry = [s for s in scripts.values() if "\ndef main(" in "\n" + s["content"]]
    assert entry, "no entry script with main"
    sql = {key for key in scripts if (ROOT / f"{key}.pg.sql").is_file()}
    assert "f/dodo/record_delivery" in sql  # the entry flow's record step, run by the worker itself
    for key, script in scripts.items():
        assert script["language"] == ("postgresql" if key in sql else "python3"), key
    for script in entry:
        assert script["summary"], f"{script['path']}: empty summary"
        assert script["schema"]["type"] == "object", script["path"]


def test_second_push_of_the_same_tree_creates_nothing_and_changes_nothing(deployment):
    creates = [r.line for r in deployment["second"] if r.is_write and (
        r.path.endswith("/create") and not (isinstance(r.body, dict)
                                            and r.body.get("parent_hash")))]
    assert creates == []
    wm = deployment["wm"]
    now = deployed_items(wm.ws)
    assert now.keys() == deployment["after_first"].keys()
    assert mismatches(expected_items(), now) == []


def test_the_check_notices_a_missing_or_altered_item(tmp_path):
    """Push a tampered checkout: one script edited, one other item's file deleted."""
    expected = expected_items()
    script = next(key for kind, key in sorted(expected) if kind == "script")
    dropped = next((kind, key) for kind, key in sorted(expected)
                   if kind not in ("script", "folder", "flow"))
    tampered = copy_bundle(tmp_path / "tampered")
    (tampered / f"{script}.py").write_text(
        (tampered / f"{script}.py").read_text() + "\n# tampered\n")
    suffix = {"resource_type": ".resource-type.yaml"}.get(dropped[0], f".{dropped[0]}.yaml")
    (tampered / f"{dropped[1]}{suffix}").unlink()
    with WindmillStandin(WORKSPACE, TOKEN) as wm:
        result = wmill_push(tampered, wm.base_url, WORKSPACE, TOKEN, tmp_path / "home")
        assert result.returncode == 0, result.stdout + result.stderr
        found = mismatches(expected, deployed_items(wm.ws))
    assert found == [f"missing: {dropped[0]} {dropped[1]}",
                     f"altered: script {script}: field 'content'"]
