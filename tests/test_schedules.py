"""Every schedule runs, with its exact arguments, in a workspace with nothing optional.

A static `$res:`/`$var:` argument whose path does not exist fails the job in the worker
before any code runs (windmill-labs/windmill backend/windmill-worker/src/common.rs@005fbdf8
`transform_json_value`: "Resource {path} not found for `{arg}`"), every time the schedule
fires. So a schedule names only what must exist (Postgres, the pushed routing variable)
and each script looks the optional integrations up itself, says what it skipped, and
honours the ones that exist: here the Slack incoming-webhook variable.
"""
import json
from pathlib import Path

import pytest
import yaml
from fixture_data import FIXTURE_SECRET
from werkzeug import Request, Response

from f.dodo.lib import ledger
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client

SCHEDULES = sorted(ROOT.glob("f/**/*.schedule.yaml"))
OPTIONAL = ["f/dodo/hubspot", "f/dodo/slack", "f/dodo/smtp", "f/dodo/twilio", "f/dodo/dodo_api",
            "f/dodo/slack_webhook_url", "f/dodo/webhook_secret_previous"]


@pytest.fixture
def schema_name():
    return "dodo"  # the scripts' default schema


def schedule(file: Path) -> dict:
    return yaml.safe_load(file.read_text())


def run_schedule(runner: Runner, file: Path):
    """The scheduled job: the script at script_path with the schedule's args, resolved as
    the worker resolves them (a missing path fails the job)."""
    s = schedule(file)
    assert s["is_flow"] is False
    return runner.run_script(s["script_path"], s["args"])


def bare_workspace(db_url: str):
    """Postgres, the webhook secret and the pushed variables; no optional integration."""
    config = bundle_config(db_url, FIXTURE_SECRET)
    assert not set(OPTIONAL) & (set(config.variables) | set(config.resources))
    return config


def test_there_are_schedules():
    names = {schedule(f)["script_path"] for f in SCHEDULES}
    assert names == {"f/dodo/reconcile", "f/dodo/revenue_report", "f/dodo/notify/digest", "f/dodo/mysql_mirror",
                     "f/dodo/warehouse_export"}


@pytest.mark.parametrize("file", SCHEDULES, ids=lambda f: f.name)
def test_each_schedule_succeeds_with_nothing_optional_and_says_what_it_skipped(file, db, outbox):
    quiet_wmill_client()
    ledger.enqueue(db.conn, "msg_digest_1", "notify", "digest", {"line": "Payment 29.99 USD from Ada"})
    run = run_schedule(Runner(ROOT, bare_workspace(db.url)), file)
    assert run.success, run.result
    text = json.dumps(run.result)
    assert "skipped" in text.lower()
    if schedule(file)["script_path"] == "f/dodo/reconcile":
        assert run.result["skipped"] == ["reconcile: f/dodo/dodo_api (a dodo_payments resource) is not configured: "
                                         "create it to reconcile with the Dodo API"]
    elif schedule(file)["script_path"] == "f/dodo/mysql_mirror":
        assert run.result == {"skipped": "no f/dodo/mysql resource: create a mysql resource there to mirror"}
    elif schedule(file)["script_path"] == "f/dodo/warehouse_export":
        assert run.result["skipped"] == "no new inbox rows to export" and run.result["files"] == 0
    else:
        assert "slack: neither f/dodo/slack nor f/dodo/slack_webhook_url is configured" in text
        assert "email: f/dodo/smtp is not configured" in text


def slack_webhook(httpserver, messages: list):
    """An incoming-webhook stand-in: POST JSON {text, blocks} to the hook's path, answers "ok"."""
    def handler(request: Request) -> Response:
        assert request.headers.get("Content-Type", "").startswith("application/json")
        body = json.loads(request.get_data())
        assert isinstance(body.get("text"), str) and body["text"]
        assert isinstance(body.get("blocks"), list) and body["blocks"]
        messages.append(body)
        return Response("ok", content_type="text/plain")
    httpserver.expect_request("/services/T000/B000/XXXX", method="POST").respond_with_handler(handler)
    return httpserver.url_for("/services/T000/B000/XXXX")


@pytest.mark.parametrize("script", ["f/dodo/notify/digest", "f/dodo/revenue_report"])
def test_the_digest_and_the_report_honour_the_slack_webhook_variable(script, db, outbox, httpserver):
    quiet_wmill_client()
    messages: list = []
    config = bare_workspace(db.url)
    config.variables["f/dodo/slack_webhook_url"] = slack_webhook(httpserver, messages)
    ledger.enqueue(db.conn, "msg_digest_1", "notify", "digest", {"line": "Payment 29.99 USD from Ada"})
    [file] = [f for f in SCHEDULES if schedule(f)["script_path"] == script]
    run = run_schedule(Runner(ROOT, config), file)
    httpserver.check_assertions()
    assert run.success, run.result
    assert len(messages) == 1
    if script == "f/dodo/notify/digest":
        assert run.result["status"] == "sent" and "Payment 29.99 USD from Ada" in json.dumps(messages[0])
    else:
        assert "Revenue" in messages[0]["text"] or "revenue" in messages[0]["text"]
    text = json.dumps(run.result)
    assert "slack: neither" not in text and "email: f/dodo/smtp is not configured" in text
    assert not outbox.exists() or "slack" not in outbox.read_text()
