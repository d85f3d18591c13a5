"""Failure alerts: the workspace error handler f/dodo/alert_failure, called with the arguments
Windmill builds (backend/windmill-queue/src/jobs.rs push_error_handler: the failed job's result
keys plus workspace_id, job_id, path, is_flow, started_at, email), reaches Slack once per
delivery with the replay command; forged requests page nobody."""

import json

from fixture_data import FIXTURE_SECRET
from test_flows_e2e import trigger_event
from test_record_rejection import refund_without_payment_id

from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from tests.alert_standins import TOKEN, schema_name, slack  # noqa: F401 - fixtures


def handler_args(run, path="f/dodo/webhook", **extra):
    """What Windmill passes the workspace error handler for a failed job."""
    result = run.result if isinstance(run.result, dict) else {"error": run.result}
    return {**result, "workspace_id": "demo", "job_id": run.id, "path": path, "is_flow": True,
            "started_at": "2026-11-30T06:00:00Z", "email": "ops@example.com", **extra}


def test_failed_delivery_alerts_once_with_the_replay_command(db, outbox, slack):
    quiet_wmill_client()
    runner = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET, env={"SLACK_TOKEN": TOKEN}), sleep=lambda s: None)
    delivery, msg_id = refund_without_payment_id()
    failed = runner.run_flow("f/dodo/webhook", event=trigger_event(delivery))
    assert not failed.success and failed.result["webhook_id"] == msg_id
    for _ in range(2):  # Windmill may call the handler again (a re-run failing the same way)
        out = runner.run_script("f/dodo/alert_failure", handler_args(failed))
        assert out.success, out.result
    [message] = slack
    assert message["channel"] == "#payments"
    text = json.dumps(message)
    assert msg_id in text and "failed at normalize_record" in text and "refund.succeeded" in text
    assert f"python -m local_runner replay --webhook-id {msg_id}" in text
    assert "URGENT" in message["text"]


def test_forged_request_pages_nobody(db, outbox, slack):
    quiet_wmill_client()
    runner = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET, env={"SLACK_TOKEN": TOKEN}))
    delivery, _ = refund_without_payment_id()
    delivery["headers"]["webhook-signature"] = "v1,AAAA"
    forged = runner.run_flow("f/dodo/webhook", event=trigger_event(delivery))
    assert not forged.success and forged.result["error"]["extra"]["rejected"] is True  # the preprocessor's own error
    out = runner.run_script("f/dodo/alert_failure", handler_args(forged))
    assert out.success and out.result["alerted"] is False
    assert slack == []


def test_failed_scheduled_job_alerts_once(db, outbox, slack):
    quiet_wmill_client()
    runner = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET, env={"SLACK_TOKEN": TOKEN}))
    args = {"error": {"name": "DeliveryError", "message": "SMTP refused"}, "workspace_id": "demo",
            "job_id": "0190-job", "path": "f/dodo/revenue_report", "is_flow": False,
            "schedule_path": "f/dodo/revenue_report", "started_at": "2026-11-30T07:00:00Z", "email": "x"}
    for _ in range(2):
        assert runner.run_script("f/dodo/alert_failure", args).success
    [message] = slack
    assert "schedule f/dodo/revenue_report: SMTP refused" in json.dumps(message)
