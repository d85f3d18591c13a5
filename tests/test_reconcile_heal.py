"""Reconciliation heals the sinks: each object it records reaches the CRM and the
notifications through the same code as a delivery, once (delivery ledger)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.wrappers import Request, Response

from f.dodo.lib import heal, notify
from f.dodo.lib import reconcile as rec
from f.dodo.lib import routing as rules
from tests.dodo_api_standin import DodoApi
from tests.ops_stream import BUSINESS, iso

AFTER = datetime(2026, 6, 1, tzinfo=timezone.utc)
TOKEN = "xoxb-heal"


@pytest.fixture
def slack(httpserver):
    posted = []

    def handle(request: Request) -> Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        posted.append(request.get_json())
        return Response(json.dumps({"ok": True, "ts": f"1.{len(posted)}"}), content_type="application/json")

    httpserver.expect_request("/slack/chat.postMessage", method="POST").respond_with_handler(handle)
    return posted


def lost_objects() -> dict:
    """Objects Dodo has and no webhook delivered: a refund and a dispute (both routed to Slack)."""
    at = iso(AFTER - timedelta(days=2))
    customer = {"customer_id": "cus_heal", "email": "heal@example.com", "name": "Heal Me"}
    payment = {"payment_id": "pay_heal", "business_id": BUSINESS, "status": "succeeded", "currency": "JPY",
               "total_amount": 1000, "created_at": at, "customer": customer}
    refund = {"refund_id": "ref_heal", "payment_id": "pay_heal", "business_id": BUSINESS, "status": "succeeded",
              "amount": 400, "currency": "JPY", "created_at": at, "is_partial": True, "customer": customer,
              "metadata": {}}
    dispute = {"dispute_id": "dis_heal", "payment_id": "pay_heal", "business_id": BUSINESS, "amount": "1000",
               "currency": "JPY", "dispute_stage": "dispute", "dispute_status": "dispute_opened", "created_at": at,
               "customer": customer}
    return {"payments": {"pay_heal": payment}, "refunds": {"ref_heal": refund}, "disputes": {"dis_heal": dispute},
            "subscriptions": {}}


def test_recorded_objects_reach_crm_and_notifications_once(make_db, httpserver, slack, tmp_path, monkeypatch):
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    db = make_db()
    api = DodoApi(httpserver, lost_objects())
    transports = notify.Transports(slack={"token": TOKEN}, slack_api=httpserver.url_for("/slack"))
    hook = heal.sinks(db.conn, None, rules.load(None), transports)  # no HubSpot: the CRM write goes to the outbox
    with rec.client_from_resource(api.resource) as client:
        first = rec.reconcile(db.conn, client, now=AFTER, on_recorded=hook)
    actions = {r["id"]: r["action"] for r in first["drift"]}
    assert set(actions) == {"pay_heal", "ref_heal", "dis_heal"}
    assert all(a == "recorded; crm done, notify done" for a in actions.values()), actions
    # the refund and the dispute are routed to Slack, the payment to the daily digest
    assert len(slack) == 2 and {"ref_heal", "dis_heal"} == {
        i for m in slack for i in ("ref_heal", "dis_heal") if i in json.dumps(m)}
    ledger = db.conn.execute("SELECT webhook_id, sink, channel, status FROM delivery_ledger "
                             "WHERE webhook_id LIKE 'reconcile:%' ORDER BY 1, 2, 3").fetchall()
    # dispute.opened also routes to email (no recipients configured: skipped, still recorded once)
    assert {(sink, channel) for _, sink, channel, _ in ledger} == {("crm", "hubspot"), ("notify", "slack"),
                                                                   ("notify", "digest"), ("notify", "email")}
    crm_lines = [line for line in (tmp_path / "outbox.jsonl").read_text().splitlines()
                 if json.loads(line)["kind"] == "hubspot"]
    assert len(crm_lines) == 3 and all("heal@example.com" in line for line in crm_lines)

    # The same events again (a re-run of the hook, a replay): the ledger sends nothing twice.
    for webhook_id, in db.conn.execute("SELECT DISTINCT webhook_id FROM delivery_ledger "
                                       "WHERE webhook_id LIKE 'reconcile:%'").fetchall():
        payload = db.conn.execute("SELECT payload FROM webhook_events WHERE webhook_id = %s", [webhook_id]).fetchone()[0]
        hook(webhook_id, payload)
    assert len(slack) == 2
    with rec.client_from_resource(api.resource) as client:
        again = rec.reconcile(db.conn, client, now=AFTER + timedelta(days=1), on_recorded=hook)
    assert again["drift"] == [] and len(slack) == 2


def test_a_failing_sink_is_marked_for_replay(make_db, httpserver, tmp_path, monkeypatch):
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    db = make_db()
    httpserver.expect_request("/slack/chat.postMessage", method="POST").respond_with_json(
        {"ok": False, "error": "channel_not_found"})
    objects = lost_objects()
    objects["payments"], objects["disputes"] = {}, {}
    api = DodoApi(httpserver, objects)
    transports = notify.Transports(slack={"token": TOKEN}, slack_api=httpserver.url_for("/slack"))
    with rec.client_from_resource(api.resource) as client:
        result = rec.reconcile(db.conn, client, kinds=("refunds",), now=AFTER,
                               on_recorded=heal.sinks(db.conn, None, rules.load(None), transports))
    [row] = result["drift"]
    assert row["action"].startswith("recorded; crm done, notify failed (NotifyError): replay reconcile:refund:ref_heal:")
    status, step = db.conn.execute("SELECT status, failed_step FROM webhook_events WHERE webhook_id LIKE "
                                   "'reconcile:refund:%'").fetchone()
    assert (status, step) == ("failed", "notify")


def test_entry_script_heals_with_the_workspaces_integrations(make_db, httpserver, slack, tmp_path, monkeypatch):
    from local_runner import Runner  # noqa: PLC0415
    from local_runner.demo import ROOT, bundle_config, quiet_wmill_client  # noqa: PLC0415

    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    monkeypatch.setenv("DODO_SLACK_API_URL", httpserver.url_for("/slack"))
    quiet_wmill_client()
    db = make_db()
    api = DodoApi(httpserver, lost_objects())
    runner = Runner(ROOT, bundle_config(db.url, "whsec_" + "a" * 44, env={"SLACK_TOKEN": TOKEN}))
    args = {"db": "$res:f/dodo/postgres", "dodo": api.resource, "kinds": ["refunds"], "schema": db.schema,
            "full": True}
    out = runner.run_script("f/dodo/reconcile", args)
    assert out.success, out.result
    assert len(slack) == 1 and "ref_heal" in json.dumps(slack[0])
    assert runner.run_script("f/dodo/reconcile", dict(args, heal_sinks=True)).success
    assert len(slack) == 1  # nothing drifts any more, nothing is sent twice
