"""f/dodo/replay: failed deliveries re-run through the real entry flow in the local
runner, against real Postgres and pytest-httpserver stand-ins of HubSpot and Slack."""
import json
import os
import subprocess
import sys

import pytest
from fixture_data import FIXTURE_SECRET, resign
from werkzeug import Response

from f.dodo.lib import ledger, store
from f.dodo.lib import replay as rp
from f.dodo.lib.normalizer import normalize_event
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from tests.standin_checks import hubspot_upsert, slack_post_message

ENTRY = "f/dodo/webhook"
HUBSPOT_TOKEN, SLACK_TOKEN = "pat-test", "xoxb-test"


@pytest.fixture
def schema_name():
    return "dodo"  # the flows record into their scripts' default schema


@pytest.fixture
def services(httpserver, monkeypatch):
    """HubSpot and Slack stand-ins that can be switched down; each keeps its successful sends."""
    state = {"hubspot_up": True, "slack_up": True, "hubspot": [], "slack": []}

    def hubspot(request):
        hubspot_upsert(request, HUBSPOT_TOKEN)
        if not state["hubspot_up"]:
            return Response(json.dumps({"status": "error", "message": "Property dodo_mrr does not exist",
                                        "category": "VALIDATION_ERROR"}), 400, content_type="application/json")
        state["hubspot"].append(request.get_json())
        return Response(json.dumps({"status": "COMPLETE", "results": [{"id": "hs-101", "properties": {}}]}),
                        200, content_type="application/json")

    def slack(request):
        slack_post_message(request, SLACK_TOKEN)
        if not state["slack_up"]:
            return Response(json.dumps({"ok": False, "error": "channel_not_found"}), 200,
                            content_type="application/json")
        state["slack"].append(request.get_json())
        return Response(json.dumps({"ok": True, "ts": f"1700000000.{len(state['slack']):06d}"}), 200,
                        content_type="application/json")

    httpserver.expect_request("/crm/v3/objects/contacts/batch/upsert", method="POST").respond_with_handler(hubspot)
    httpserver.expect_request("/chat.postMessage", method="POST").respond_with_handler(slack)
    base = httpserver.url_for("").rstrip("/")
    monkeypatch.setenv("DODO_HUBSPOT_API_URL", base)
    monkeypatch.setenv("DODO_SLACK_API_URL", base)
    return state


@pytest.fixture
def runner(db, outbox, services):
    quiet_wmill_client()
    cfg = bundle_config(db.url, FIXTURE_SECRET)
    cfg.resources["f/dodo/hubspot"] = {"token": HUBSPOT_TOKEN}
    cfg.resources["f/dodo/slack"] = {"token": SLACK_TOKEN}
    return Runner(ROOT, cfg, sleep=lambda _s: None, random=lambda: 0.5)


def deliver(runner, name: str):
    d = resign(name)
    event = {"kind": "webhook", "body": json.loads(d["body"]), "raw_string": d["body"], "query": {},
             "headers": {k.replace("-", "_"): v for k, v in d["headers"].items()}}
    return runner.run_flow(ENTRY, event=event)


def webhook_id(name: str) -> str:
    return resign(name)["headers"]["webhook-id"]


def replay(runner, **args) -> list[dict]:
    run = runner.run_script("f/dodo/replay", {"db": "$res:f/dodo/postgres", **args})
    assert run.success, run.result
    table = run.result["render_all"][1]
    return table.get("table-row-object", [])


def inbox(db, wid: str) -> dict:
    cur = db.conn.execute("SELECT * FROM webhook_events WHERE webhook_id = %s", (wid,))
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def channels(db, wid: str) -> dict:
    return {f"{r['sink']}/{r['channel']}": r["status"] for r in ledger.rows(db.conn, wid)}


def slack_split(services) -> tuple[list, list]:
    """(notifications, failure alerts) posted to Slack; an alert's context names `alert:<webhook-id>`."""
    alerts = [m for m in services["slack"] if "alert:" in json.dumps(m.get("blocks"))]
    return [m for m in services["slack"] if m not in alerts], alerts


def test_replaying_a_failed_event_twice_sends_each_sink_once(runner, db, services):
    wid = webhook_id("subscription.active")
    services["hubspot_up"] = False
    assert not deliver(runner, "subscription.active").success
    assert inbox(db, wid)["status"] == "failed" and inbox(db, wid)["failed_step"] == "crm"
    notes, alerts = slack_split(services)
    assert len(notes) == 1 and services["hubspot"] == []
    assert len(alerts) == 1 and f"alert:{wid}" in json.dumps(alerts[0]["blocks"])  # the failure reached a person

    first = replay(runner)  # HubSpot still down: fails again, Slack is not sent again, nor the alert
    assert [(r["webhook_id"], r["success"], r["status"]) for r in first] == [(wid, False, "failed")]
    assert [len(x) for x in slack_split(services)] == [1, 1] and services["hubspot"] == []

    services["hubspot_up"] = True
    second = replay(runner)
    assert [(r["webhook_id"], r["success"], r["status"], r["sent_now"]) for r in second] == \
        [(wid, True, "processed", "crm/hubspot")]
    assert len(services["hubspot"]) == 1 and [len(x) for x in slack_split(services)] == [1, 1]
    assert channels(db, wid) == {"crm/hubspot": "sent", "notify/slack": "sent"}

    assert replay(runner) == []  # nothing failed any more
    # marked failed again (say a late failure module) and replayed by id: the flow runs,
    # the store applies it again, both sinks find their channel sent and send nothing
    store.mark_failed(db.conn, wid, "late failure", "notify")
    again = replay(runner, webhook_ids=[wid])
    assert [(r["success"], r["status"], r["sent_now"]) for r in again] == [(True, "processed", "")]
    assert len(services["hubspot"]) == 1 and [len(x) for x in slack_split(services)] == [1, 1]
    assert inbox(db, wid)["status"] == "processed"


def test_a_dry_run_lists_the_channels_to_retry_and_changes_nothing(runner, db, services, httpserver):
    services["hubspot_up"] = False
    for name in ("subscription.active", "subscription.cancelled"):
        assert not deliver(runner, name).success
    snapshot = lambda: (db.conn.execute("SELECT * FROM webhook_events ORDER BY webhook_id").fetchall(),  # noqa: E731
                        db.conn.execute("SELECT * FROM delivery_ledger ORDER BY 1, 2, 3").fetchall())
    before, requests = snapshot(), len(httpserver.log)
    rows = replay(runner, dry_run=True)
    assert [r["webhook_id"] for r in rows] == [webhook_id("subscription.active"), webhook_id("subscription.cancelled")]
    assert all(r["to_retry"] == "crm/hubspot" and r["done"] == "notify/slack" and r["failed_step"] == "crm"
               for r in rows)
    assert snapshot() == before and len(httpserver.log) == requests


def test_events_are_replayed_in_event_time_order(runner, db, services):
    services["slack_up"] = False
    delivered = ["subscription.cancelled", "subscription.active", "subscription.on_hold"]  # late ones first
    for name in delivered:
        assert not deliver(runner, name).success
    services["slack_up"] = True
    rows = replay(runner, event_types=["subscription.*"])
    by_time = ["subscription.active", "subscription.on_hold", "subscription.cancelled"]  # 10:28, 10:30, 10:34
    assert [r["event_type"] for r in rows] == by_time and all(r["success"] for r in rows)
    sent = [json.dumps(m) for m in services["slack"]]
    assert len(sent) == 3
    assert [next(t for t in by_time if t.split(".")[1].replace("_", " ") in s.lower()) for s in sent] == by_time
    assert len(services["hubspot"]) == 3  # HubSpot took each delivery once, at delivery time


# ---------------------------------------------------------------- selection (library)


def failed(db, name: str, status: str = "failed") -> str:
    d = resign(name)
    event = normalize_event(json.loads(d["body"]), d["headers"]["webhook-id"])
    store.mark_failed(db.conn, event["webhook_id"], "boom", "crm", event=event)
    if status == "received":
        store.reset_for_replay(db.conn, [event["webhook_id"]])
    return event["webhook_id"]


def test_selection_by_id_type_time_and_status_in_event_time_order(db):
    ids = {n: failed(db, n) for n in ("refund.succeeded", "dispute.opened", "payment.succeeded", "dispute.won")}
    ids["dispute.lost"] = failed(db, "dispute.lost", status="received")
    pick = lambda **kw: [r["event_type"] for r in rp.select(db.conn, rp.Selection(**kw))]  # noqa: E731
    # default: failed only, oldest event first (10:15, 10:19, 10:21, 10:26)
    assert pick() == ["payment.succeeded", "refund.succeeded", "dispute.opened", "dispute.won"]
    assert pick(webhook_ids=(ids["dispute.won"], ids["refund.succeeded"])) == ["refund.succeeded", "dispute.won"]
    assert pick(event_types=("dispute.*",)) == ["dispute.opened", "dispute.won"]
    assert pick(event_types=("dispute.*",), statuses=("failed", "received")) == \
        ["dispute.opened", "dispute.won", "dispute.lost"]
    assert pick(statuses=("received",)) == ["dispute.lost"]
    since, until = rp.parse_time("2026-03-02T10:19:00.12Z"), rp.parse_time("2026-03-02T10:26:00.12Z")
    assert pick(since=since, until=until) == ["refund.succeeded", "dispute.opened"]  # [since, until)
    assert pick(limit=2) == ["payment.succeeded", "refund.succeeded"]
    with pytest.raises(ValueError):
        rp.Selection(statuses=("processed",))


def test_a_pasted_event_is_replayed_as_pasted_under_the_same_keys(db):
    event = json.loads(resign("refund.succeeded")["body"])
    key = store.webhook_id_of(normalize_event(event, None))
    row = {"webhook_id": key, "payload": event}
    assert "webhook_id" not in rp.flow_args(row, {})
    normalized = normalize_event(rp.flow_args(row, {})["event"], None)
    assert store.webhook_id_of(normalized) == key
    assert rp.ledger_key(row) == f"refund.succeeded:{normalized['entity_id']}"


# ---------------------------------------------------------------- the local CLI


def test_cli_replay_draws_a_progress_bar_and_prints_the_table(runner, db, services, tmp_path):
    services["hubspot_up"] = False
    assert not deliver(runner, "subscription.active").success
    env = {**os.environ, "DATABASE_URL": db.url, "DODO_OUTBOX": str(tmp_path / "cli-outbox.jsonl")}
    env.pop("HUBSPOT_TOKEN", None)
    cli = lambda *a: subprocess.run([sys.executable, "-m", "local_runner", "replay", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT, env=env, timeout=120)
    dry = cli("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert webhook_id("subscription.active") in dry.stdout and "crm/hubspot" in dry.stdout
    assert inbox(db, webhook_id("subscription.active"))["status"] == "failed"
    done = cli("--status", "failed")  # no HUBSPOT_TOKEN here: the CRM write goes to the outbox
    assert done.returncode == 0, done.stderr
    assert "] 100%" in done.stderr and "1 succeeded" in done.stdout
    assert inbox(db, webhook_id("subscription.active"))["status"] == "processed"
    assert [len(x) for x in slack_split(services)] == [1, 1]  # the notification and the failure's alert, once each


def test_each_replayed_run_gets_its_own_delivery_attempt():
    """As the preprocessor does per trigger run: a restarted record step of the same
    replay answers "recorded", a later replay is a run of its own."""
    row = {"webhook_id": "msg_1", "payload": {"type": "payment.succeeded"}}
    first, second = rp.flow_args(row, {}), rp.flow_args(row, {})
    assert first["webhook_id"] == "msg_1" and len(first["delivery_attempt"]) == 32
    assert first["delivery_attempt"] != second["delivery_attempt"]
