"""Failure alerting as Windmill does it, through the local runner: the workspace error
handler (windmill-labs/windmill backend/windmill-queue/src/jobs.rs@7f41b1ef
`push_error_handler`, `sanitize_result`) is called for a failed root script or flow
without a failure module, never for a preview or the handler's own job; a flow with a
failure module, such as the entry flow, handles its own errors, so a failed delivery's
alert comes from the failure module (f/dodo/mark_failed), once, with the replay command."""

import email
import email.policy
import json
import re

import pytest
from fixture_data import FIXTURE_SECRET
from test_flows_e2e import trigger_event
from test_record_rejection import refund_without_payment_id

from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from tests.alert_standins import TOKEN, schema_name, slack  # noqa: F401 - fixtures

HANDLER = {"path": "script/f/dodo/alert_failure", "extra_args": {"schema": "dodo"}}


@pytest.fixture
def runner(db, outbox):
    quiet_wmill_client()
    cfg = bundle_config(db.url, FIXTURE_SECRET, env={"SLACK_TOKEN": TOKEN})
    cfg.error_handler = dict(HANDLER)  # Workspace settings -> Error handler -> f/dodo/alert_failure
    return Runner(ROOT, cfg, sleep=lambda s: None)


def failing_export(runner, **kw):
    return runner.run_script("f/dodo/export", {"db": "$res:f/dodo/postgres", "kind": "payments",
                                               "date_from": "yesterday-ish"}, **kw)


def test_a_failed_delivery_reaches_a_person_once_with_the_replay_command(runner, slack):
    delivery, msg_id = refund_without_payment_id()
    failed = runner.run_flow("f/dodo/webhook", event=trigger_event(delivery))
    assert not failed.success and failed.result["webhook_id"] == msg_id
    assert failed.error_handler is None  # the entry flow has a failure module: Windmill calls no handler
    [message] = slack
    text = json.dumps(message)
    assert msg_id in text and "failed at normalize_record" in text
    assert f"python -m local_runner replay --webhook-id {msg_id}" in text
    again = runner.run_flow("f/dodo/webhook", event=trigger_event(delivery))  # Dodo delivers it again
    assert not again.success and len(slack) == 1


def test_a_forged_request_pages_nobody(runner, slack):
    delivery, _ = refund_without_payment_id()
    delivery["headers"]["webhook-signature"] = "v1,AAAA"
    forged = runner.run_flow("f/dodo/webhook", event=trigger_event(delivery))
    assert not forged.success and forged.result["error"]["name"].startswith("Signature")
    assert forged.error_handler is None and slack == []  # a flow with a failure module: no handler


def test_a_failed_scheduled_script_calls_the_workspace_handler_with_windmills_arguments(runner, slack):
    failed = failing_export(runner, schedule_path="f/dodo/nightly_export")
    assert not failed.success
    handler = failed.error_handler
    assert handler is not None and handler.success, handler and handler.result
    assert handler.path == "f/dodo/alert_failure" and handler.result["alerted"] is True
    args = handler.args
    assert set(args) == {"error", "schedule_path", "workspace_id", "job_id", "path", "is_flow", "started_at",
                         "email", "schema"}
    assert (args["path"], args["job_id"], args["is_flow"], args["schedule_path"], args["workspace_id"]) == (
        "f/dodo/export", failed.id, False, "f/dodo/nightly_export", runner.config.workspace)
    assert args["error"] == failed.result["error"] and args["started_at"].endswith("Z")
    [message] = slack
    assert "schedule f/dodo/nightly_export" in json.dumps(message)


def test_no_handler_for_previews_or_when_none_is_set(runner, slack):
    preview = runner.run_code("python3", "def main():\n    raise ValueError('boom')\n")
    assert not preview.success and preview.error_handler is None
    runner.config.error_handler = None
    assert failing_export(runner).error_handler is None
    assert slack == []


def test_a_failing_handler_is_not_handled_again(runner, slack, capsys):
    runner.config.error_handler = {"path": "script/f/dodo/export"}  # a handler that fails itself
    failed = failing_export(runner)
    assert failed.error_handler is not None and not failed.error_handler.success
    assert failed.error_handler.error_handler is None
    assert "CRITICAL workspace error handler script/f/dodo/export failed" in capsys.readouterr().err


def test_two_failing_branches_alert_once(db, outbox, httpserver, monkeypatch):
    """The failure module runs inside each failing branch (worker_flow.rs); the delivery's
    alert still goes out once (ledger key alert:<webhook-id>)."""
    from fixture_data import resign  # noqa: PLC0415
    from werkzeug import Response as Plain  # noqa: PLC0415

    from tests.provider_standins import SLACK_TOKEN, SlackApi, SmtpServer  # noqa: PLC0415

    slack = SlackApi(httpserver, scopes=("files:write",))  # no chat:write: every post is refused
    httpserver.expect_request(re.compile(r"^/hubspot/.*")).respond_with_response(Plain(
        json.dumps({"status": "error", "message": "Authentication credentials not found.",
                    "category": "INVALID_AUTHENTICATION"}), 401, content_type="application/json"))
    monkeypatch.setenv("DODO_SLACK_API_URL", slack.url)
    monkeypatch.setenv("DODO_HUBSPOT_API_URL", httpserver.url_for("/hubspot"))
    with SmtpServer() as smtp:
        quiet_wmill_client()
        cfg = bundle_config(db.url, FIXTURE_SECRET, env={"SLACK_TOKEN": SLACK_TOKEN, "HUBSPOT_TOKEN": "pat-revoked",
                                                         "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port)})
        cfg.variables["f/dodo/notify_routing"] = json.dumps({"rules": [
            {"match": "delivery.failed", "channels": ["email"], "email_to": ["ops@example.com"], "urgency": "urgent"},
            {"match": "dispute.*", "channels": ["slack"]}]})
        cfg.error_handler = dict(HANDLER)
        delivery = resign("dispute.opened")
        msg_id = delivery["headers"]["webhook-id"]
        run = Runner(ROOT, cfg, sleep=lambda s: None).run_flow("f/dodo/webhook", event=trigger_event(delivery))
    assert not run.success and run.error_handler is None
    failure_steps = [j for j in run.jobs if j.kind == "failure"]
    assert len(failure_steps) == 2 and {j.result["webhook_id"] for j in failure_steps} == {msg_id}
    assert slack.posted == []
    [(_, to, content)] = smtp.messages
    assert to == ["ops@example.com"]
    mail = email.message_from_bytes(content, policy=email.policy.default)
    text = mail.get_body(("plain",)).get_content()
    assert mail["Subject"].startswith("[URGENT]")
    assert msg_id in text and f"python -m local_runner replay --webhook-id {msg_id}" in text
