"""What the bundle relies on from Windmill, checked on the bundle itself (issue 10 item 8).

- The failure module runs inside each failing branch of the fan-out, with the inner
  step's id (worker_flow.rs: payload_from_modules copies flow.failure_module into every
  branch sub-flow); the flow's own does not run again.
- No local outbox file on Windmill: a job's working directory is deleted after the job
  (windmill-worker), so an unconfigured channel is a `skipped` ledger row in Postgres.
- Bundle resource types are named `dodo_*`: the CLI's pushResourceType "updates" a type
  named like a hub type (`twilio`) found in the admins workspace, and the bundle's own
  schema never exists (windmill-cli 1.819.0).
- folder.meta.yaml carries no owners: pushFolder sends the file as the update
  (updateFolder requestBody {...localFolder}), and `owners: []` empties them.
- `# requirements:` pins follow lazy imports: a requirements block replaces Windmill's
  inference (windmill-parser-py-imports), which never sees a function-level import.
"""
import json
import re
from pathlib import Path

import pytest
import yaml
from fixture_data import FIXTURE_SECRET, resign

from f.dodo.lib import ledger
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from tools import pins

ENTRY = "f/dodo/webhook"
WINDMILL_TYPES = {"postgresql", "mysql", "slack", "smtp", "hubspot"}  # Windmill's own resource types the bundle uses


@pytest.fixture
def schema_name():
    return "dodo"  # the flows record into their scripts' default schema


def trigger_event(name: str) -> dict:
    d = resign(name)
    return {"kind": "webhook", "body": json.loads(d["body"]), "raw_string": d["body"], "query": {},
            "headers": {k.replace("-", "_"): v for k, v in d["headers"].items()}}


def test_two_failing_sinks_each_run_the_failure_module_with_their_step_id(db, outbox, httpserver, monkeypatch):
    httpserver.expect_request("/crm/v3/objects/contacts/batch/upsert", method="POST").respond_with_json(
        {"status": "error", "message": "Property dodo_mrr does not exist", "category": "VALIDATION_ERROR"}, status=400)
    httpserver.expect_request("/chat.postMessage", method="POST").respond_with_json(
        {"ok": False, "error": "channel_not_found"})
    base = httpserver.url_for("").rstrip("/")
    monkeypatch.setenv("DODO_HUBSPOT_API_URL", base)
    monkeypatch.setenv("DODO_SLACK_API_URL", base)
    cfg = bundle_config(db.url, FIXTURE_SECRET)
    cfg.resources["f/dodo/hubspot"] = {"token": "pat-test"}
    cfg.resources["f/dodo/slack"] = {"token": "xoxb-test"}
    quiet_wmill_client()
    run = Runner(ROOT, cfg, sleep=lambda s: None, random=lambda: 0.5).run_flow(
        ENTRY, event=trigger_event("refund.succeeded"))
    assert not run.success
    branches = {j.id: j for j in run.jobs if j.kind == "flowpreview"}
    failures = [j for j in run.jobs if j.kind == "failure"]
    assert sorted(branches[j.parent].step_id for j in failures) == ["sinks/branch-0", "sinks/branch-1"]
    assert all(j.success for j in failures)
    wid = resign("refund.succeeded")["headers"]["webhook-id"]
    row = db.conn.execute("SELECT status, failed_step FROM webhook_events WHERE webhook_id = %s", (wid,)).fetchone()
    assert row[0] == "failed" and row[1] in ("crm", "notify")
    errors = sorted(j.result["webhook_id"] for j in failures)
    assert errors == [wid, wid]


def test_an_unconfigured_channel_writes_no_file_and_is_recorded_skipped(db, tmp_path, monkeypatch):
    monkeypatch.delenv("DODO_OUTBOX", raising=False)
    monkeypatch.chdir(tmp_path)  # a Windmill job's working directory, deleted after the job
    quiet_wmill_client()
    run = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET), sleep=lambda s: None).run_flow(
        ENTRY, event=trigger_event("refund.succeeded"))
    assert run.success, run.result
    assert list(tmp_path.iterdir()) == []
    rows = ledger.rows(db.conn, resign("refund.succeeded")["headers"]["webhook-id"])
    assert {(r["sink"], r["channel"]) for r in rows} >= {("crm", "hubspot"), ("notify", "slack")}
    assert all(r["status"] == "skipped" and r["external_id"] == "outbox:unconfigured" for r in rows)


def test_bundle_resource_types_are_named_dodo_and_every_reference_exists():
    types = {p.name.removesuffix(".resource-type.yaml") for p in ROOT.glob("*.resource-type.yaml")}
    assert types and all(t.startswith("dodo_") for t in types), types
    referenced = set()
    for file in [*ROOT.glob("f/**/*.yaml"), *ROOT.glob("f/**/*.py")]:
        referenced |= set(re.findall(r"resource-([a-z_]+)", file.read_text()))
    assert referenced - WINDMILL_TYPES <= types, referenced - WINDMILL_TYPES - types
    resources = (ROOT / "f/dodo/lib/resources.py").read_text()  # a class's name is its resource type
    assert re.findall(r"^class (\w+)\(dict\)", resources, re.M) and "class twilio(" not in resources


def test_folder_meta_leaves_the_owners_alone():
    meta = yaml.safe_load((ROOT / "f/dodo/folder.meta.yaml").read_text())
    assert "owners" not in meta and "extra_perms" not in meta and meta["display_name"] == "dodo"


def test_pins_follow_function_level_imports(tmp_path):
    script = tmp_path / "lazy.py"
    script.write_text("def main():\n    import pydantic\n    from f.dodo.lib import db\n    return db, pydantic\n")
    found = pins.module_imports(script)
    assert {"pydantic", "f.dodo.lib.db"} <= found
    header = (ROOT / "f/dodo/store_event.py").read_text().split('"""', 1)[0]
    assert "# pydantic==" in header  # store.record_delivery imports the normaliser lazily
    header = (ROOT / "f/dodo/mark_failed.py").read_text().split('"""', 1)[0]
    assert "# psycopg2-binary==" in header and "# pydantic==" in header  # both behind lazy imports


def test_the_readme_gives_the_cloud_route_path_and_the_admin_it_needs():
    readme = (ROOT / "README.md").read_text()
    assert "/api/r/<workspace>/dodo/webhook" in readme
    assert re.search(r"workspace admin", readme)
    flow = yaml.safe_load((ROOT / f"{ENTRY}__flow/flow.yaml").read_text())["value"]
    retry = next(m for m in flow["modules"] if m["id"] == "record")["retry"]["exponential"]
    # the record step keeps trying for as long as Dodo's own retries (about a day): hours, not 30 s
    waits = [min(retry["multiplier"] * retry["seconds"] ** n, 6 * 3600) for n in range(1, retry["attempts"] + 1)]
    assert sum(waits) > 12 * 3600


def test_readme_and_flow_agree_on_what_a_forged_delivery_costs():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"a forged (signature|delivery) 3\b", readme)
    assert Path(ROOT / "f/dodo/webhook__flow/flow.yaml").read_text().count("preprocessor_module") == 1
