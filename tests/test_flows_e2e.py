"""f/dodo/webhook end to end in the local runner, against a real Postgres.

Trigger runs get the event Windmill builds for a webhook call with
?raw=true&include_header=webhook-id,webhook-timestamp,webhook-signature (args.rs): the
exact body as raw_string and the three headers, `-` turned into `_`.
"""
import json
import threading
import time
import urllib.request

import pytest
import yaml
from werkzeug import Response
from fixture_data import FIXTURE_SECRET, all_deliveries, resign

from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from local_runner.server import App, make_server
from tests.standin_checks import HUBSPOT_UPSERT, hubspot_upsert

ENTRY = "f/dodo/webhook"
HOT_PATH = 8  # flow, preprocessor, record (SQL), normalize_record skipped, 2 branchall branches, crm, notify
# (f/dodo/custom empty: no job); Python processes: preprocessor, crm, notify
PYTHON_JOBS = 3
OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LW5vdC1kb2RvcyE="


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


def trigger_event(delivery: dict) -> dict:
    """The preprocessor event of a webhook call, as Windmill passes it."""
    return {"kind": "webhook", "body": json.loads(delivery["body"]), "raw_string": delivery["body"],
            "query": {}, "headers": {k.replace("-", "_"): v for k, v in delivery["headers"].items()}}


def steps(run) -> list[str]:
    return [j.step_id or j.kind for j in run.jobs]


def inbox(db, webhook_id: str) -> dict | None:
    cur = db.conn.execute("SELECT status, event_type, last_error, failed_step, attempts FROM webhook_events "
                          "WHERE webhook_id = %s", (webhook_id,))
    row = cur.fetchone()
    return row and dict(zip([d.name for d in cur.description], row))


def webhook_id(name: str) -> str:
    return dict(all_deliveries())[name]["headers"]["webhook-id"]


def test_the_hot_path_costs_eight_jobs_from_the_flow_graph():
    """Counted from flow.yaml with Windmill's job model (worker_flow.rs@8f7d467e,
    compute_next_flow_transform): root flow, preprocessor, one job per script step, one per
    branchall branch that has steps, one per subflow plus its own steps; a branchone
    costs its chosen branch, none when that branch is empty (f/dodo/custom as shipped:
    the preprocessor does not set `custom`, so the empty default is chosen)."""
    def jobs(modules: list) -> int:
        count = 0
        for m in modules:
            v = m["value"]
            if v["type"] == "branchall":
                count += sum(1 + jobs(b["modules"]) for b in v["branches"] if b["modules"])
            elif v["type"] == "branchone":
                count += (1 + jobs(v["default"])) if v["default"] else 0
            elif v["type"] == "flow":
                count += 1 + jobs(load(v["path"])["modules"])
            else:
                assert v["type"] == "script"
                count += 1
        return count

    def load(path: str) -> dict:
        return yaml.safe_load((ROOT / f"{path}__flow/flow.yaml").read_text())["value"]

    entry = load(ENTRY)
    assert 1 + bool(entry.get("preprocessor_module")) + jobs(entry["modules"]) == HOT_PATH


def test_a_recorded_event_runs_three_python_processes():
    """The record step is a PostgreSQL script (run by the worker itself) and the Python
    record step is skipped for a delivery the preprocessor normalised: the Python
    processes are the preprocessor, crm and notify."""
    entry = yaml.safe_load((ROOT / f"{ENTRY}__flow/flow.yaml").read_text())["value"]
    steps = {m["id"]: m for m in entry["modules"]}
    assert steps["record"]["value"]["path"] == "f/dodo/record_delivery"
    assert (ROOT / "f/dodo/record_delivery.pg.sql").is_file() and not (ROOT / "f/dodo/record_delivery.py").exists()
    assert steps["normalize_record"]["skip_if"]["expr"] == "!!flow_input.record"
    python = ["preprocessor"] + [m["id"] for b in steps["sinks"]["value"]["branches"] for m in b["modules"]
                                 if (ROOT / f"{m['value']['path']}.py").is_file()]
    assert len(python) == PYTHON_JOBS


@pytest.mark.parametrize("name", [n for n, _ in all_deliveries()])
def test_every_fixture_event_goes_through_the_entry_flow_into_postgres(runner, db, name):
    run = runner.run_flow(ENTRY, event=trigger_event(resign(name)))
    assert run.success, run.result
    assert steps(run)[:4] == ["flow", "preprocessor", "record", "normalize_record"]
    assert sorted(steps(run)[4:]) == ["crm", "notify", "sinks/branch-0", "sinks/branch-1"]  # parallel
    assert run.job_count == HOT_PATH
    record, skipped = run.jobs[2], run.jobs[3]
    assert skipped.kind == "identity" and skipped.step_id == "normalize_record"  # no process
    recorded = record.result
    assert recorded["status"] == "recorded" and recorded["webhook_id"] == webhook_id(name)
    row = inbox(db, webhook_id(name))
    assert row["status"] in ("processed", "ignored") and row["event_type"] == json.loads(resign(name)["body"])["type"]
    crm, notify = (next(j.result for j in run.jobs if j.step_id == s) for s in ("crm", "notify"))
    assert crm["delivery"] == notify["delivery"] == webhook_id(name)


def test_a_duplicate_stops_after_record_and_runs_no_sink(runner, db, outbox):
    first = runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded")))
    assert first.success and outbox.exists()
    sent = outbox.read_text()
    again = runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded", ts=int(time.time()) + 5)))
    assert again.success and again.skipped  # stop_after_if with skip_if_stopped
    assert again.result["status"] == "duplicate"
    assert steps(again) == ["flow", "preprocessor", "record"]
    assert outbox.read_text() == sent
    assert inbox(db, webhook_id("payment.succeeded"))["status"] == "processed"


def test_a_forged_signature_is_rejected_before_any_step(runner, db):
    run = runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded", secret=OTHER_SECRET)))
    assert not run.success
    pre = run.jobs[1]
    assert pre.kind == "preprocessor" and not pre.success
    assert "SignatureMismatch" in pre.result["error"]["name"]
    # no flow step ran; the failure module is skipped (an identity job, no process): the
    # flow ends with the preprocessor's own error
    assert [j.kind for j in run.jobs] == ["flow", "preprocessor", "identity"] and run.jobs[2].step_id == "failure"
    assert run.result == pre.result and run.result["error"]["extra"]["rejected"] is True
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0


def test_a_tampered_body_is_rejected(runner, db):
    d = resign("payment.succeeded")
    d["body"] = d["body"].replace("}", " }", 1)  # same JSON, other bytes
    run = runner.run_flow(ENTRY, event=trigger_event(d))
    assert not run.success and set(steps(run)) <= {"flow", "preprocessor", "failure"}
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0


def test_a_failing_sink_is_retried_with_backoff_then_marks_the_inbox_row_failed(db, outbox, sleeps, httpserver,
                                                                                    monkeypatch):
    # HubSpot stays rate-limited (429 of its rolling window, here 0 ms long): transient, so the
    # flow retries the step (a 4xx other than 429 fails at once: tests/test_fail_fast.py).
    # Any other request fails the test (tests/conftest.py).
    upserts = []

    def hubspot(request):
        upserts.append(hubspot_upsert(request, "pat-test"))
        return Response(json.dumps({"status": "error", "message": "You have reached your secondly limit.",
                                    "errorType": "RATE_LIMIT", "category": "RATE_LIMITS",
                                    "policyName": "TEN_SECONDLY_ROLLING"}), 429,
                        headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "0"}, content_type="application/json")

    httpserver.expect_request(HUBSPOT_UPSERT, method="POST").respond_with_handler(hubspot)
    monkeypatch.setenv("DODO_HUBSPOT_API_URL", httpserver.url_for("").rstrip("/"))
    cfg = bundle_config(db.url, FIXTURE_SECRET)
    cfg.resources["f/dodo/hubspot"] = {"token": "pat-test"}
    quiet_wmill_client()
    runner = Runner(ROOT, cfg, sleep=sleeps.append, random=lambda: 0.5)
    run = runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded")))
    assert not run.success
    attempts = [j for j in run.jobs if j.step_id == "crm"]
    assert len(attempts) == 6 and not any(j.success for j in attempts)  # 1 + 5 retries
    assert sleeps == [3.0, 9.0, 27.0, 81.0, 243.0]  # exponential: 1 * 3^n (jitter centred at 0.5)
    assert [j for j in run.jobs if j.step_id == "notify"][0].success  # the other sink still ran
    failure = [j for j in run.jobs if j.kind == "failure"]
    assert len(failure) == 1 and failure[0].success
    row = inbox(db, webhook_id("payment.succeeded"))
    assert row["status"] == "failed" and row["failed_step"] == "crm"
    assert "HubSpot 429 RATE_LIMITS: You have reached your secondly limit." in row["last_error"]
    assert len(upserts) == 6 * 5 and {kind for kind, _ in upserts} == {"contacts"}  # 5 requests per attempt


def test_a_pasted_event_runs_from_the_ui_without_preprocessor(runner, db):
    event = json.loads(resign("refund.succeeded")["body"])
    run = runner.run_flow(ENTRY, {"event": event})
    assert run.success and "preprocessor" not in steps(run)
    assert steps(run)[1:3] == ["record", "normalize_record"] and run.jobs[1].kind == "identity"  # SQL step skipped
    key = run.jobs[2].result["webhook_id"]  # the Python record step's key for a pasted event
    assert key.startswith("manual_") and inbox(db, key)["status"] == "processed"
    assert runner.run_flow(ENTRY, {"event": event}).result["status"] == "duplicate"


def test_a_pasted_event_the_normaliser_rejects_is_marked_failed_at_normalize(runner, db):
    run = runner.run_flow("f/dodo/record", {"event": {"type": "payment.succeeded", "data": {}},
                                            "webhook_id": "msg_broken"})
    assert not run.success
    row = inbox(db, "msg_broken")
    assert row["status"] == "failed" and row["failed_step"] == "normalize"


def test_record_flow_records_once(runner, db):
    event = json.loads(resign("subscription.active")["body"])
    first = runner.run_flow("f/dodo/record", {"event": event, "webhook_id": "msg_pasted_1"})
    assert first.success and first.result["status"] == "recorded"
    assert runner.run_flow("f/dodo/record", {"event": event, "webhook_id": "msg_pasted_1"}).result["status"] == \
        "duplicate"


@pytest.mark.parametrize("name, branch, script_step", [
    ("payment.succeeded", "by_category/branch-0", "crm_note"),
    ("subscription.renewed", "by_category/branch-1", "crm_lifecycle"),
    ("license_key.created", "by_category/branch-2", "crm_contact"),
    ("payout.success", "by_category/default", "crm_nothing"),
])
def test_crm_sync_flow_takes_one_branch_per_category(runner, name, branch, script_step):
    normalized = runner.run_script("f/dodo/normalize", {"event": json.loads(resign(name)["body"]),
                                                        "webhook_id": webhook_id(name)}).result
    run = runner.run_flow("f/dodo/crm_sync", {"event": normalized})
    assert run.success
    assert steps(run) == ["flow", branch, script_step]


@pytest.mark.parametrize("name, step", [("dispute.opened", "notify_dispute"), ("refund.succeeded", "notify_payment"),
                                        ("subscription.cancelled", "notify_subscription"),
                                        ("credit.added", "notify_other")])
def test_notify_flow_takes_one_branch_per_category(runner, name, step):
    normalized = runner.run_script("f/dodo/normalize", {"event": json.loads(resign(name)["body"]),
                                                        "webhook_id": webhook_id(name)}).result
    run = runner.run_flow("f/dodo/notify", {"event": normalized})
    assert run.success and steps(run)[-1] == step and run.result["delivery"] == webhook_id(name)


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def server(runner):
    app = App(runner, token="wm-token", workers=2)
    srv = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", app.workspace
    srv.shutdown()
    srv.server_close()


def _post(url: str, delivery: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=delivery["body"].encode(), method="POST",
                                 headers={"content-type": "application/json", **delivery["headers"]})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode()


def _result(base: str, ws: str, job_id: str) -> dict:
    for _ in range(1500):
        with urllib.request.urlopen(f"{base}/api/w/{ws}/jobs_u/get/{job_id}?token=wm-token", timeout=10) as r:
            job = json.loads(r.read())
        if job["type"] == "CompletedJob":
            return job
        time.sleep(0.02)
    raise AssertionError("job did not complete")


def test_a_delivery_posted_to_the_webhook_url_exactly_as_dodo_does(server, db):
    base, ws = server
    url = (f"{base}/api/w/{ws}/jobs/run/f/f/dodo/webhook?raw=true"
           f"&include_header=webhook-id,webhook-timestamp,webhook-signature&token=wm-token")
    status, job_id = _post(url, resign("dispute.opened"))
    assert status == 201
    job = _result(base, ws, job_id)
    assert job["success"] and len(job["local_jobs"]) == HOT_PATH
    assert inbox(db, webhook_id("dispute.opened"))["status"] == "processed"


def test_a_delivery_posted_to_the_http_route(server, db):
    base, ws = server
    status, job_id = _post(f"{base}/api/r/dodo/webhook", resign("subscription.cancelled"))
    assert status == 201
    job = _result(base, ws, job_id)
    assert job["success"] and inbox(db, webhook_id("subscription.cancelled"))["status"] == "processed"
