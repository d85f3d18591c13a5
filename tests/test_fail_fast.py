"""Permanent errors fail at once, with the fix in the message; outages are still retried.

Contract (f/dodo/lib/errors.py): an error whose instance attribute `permanent` is True
reaches `retry_if` as `error.extra.permanent` (Windmill's Python wrapper passes the
exception's `__dict__` as `extra`: backend/windmill-worker/src/python_executor.rs@94bbd518),
and a `$res:`/`$var:` argument whose path is missing fails in the worker with
"... not found for `<arg>`" (common.rs@005fbdf8 transform_json_value). Every retried step
uses RETRY_IF, so neither waits out six minutes of retries.
"""
import json

import pytest
import yaml
from fixture_data import FIXTURE_SECRET, resign
from test_flows_e2e import inbox, trigger_event, webhook_id
from werkzeug import Request, Response

from f.dodo.lib import errors, hubspot, ledger, routing
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client

ENTRY = "f/dodo/webhook"
TOKEN = "pat-na1-fail-fast-token"


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


def retried_modules(modules: list, where: str):
    for m in modules:
        v = m["value"]
        if m.get("retry"):
            yield f"{where}.{m['id']}", m["retry"]
        for branch in v.get("branches") or []:
            yield from retried_modules(branch["modules"], f"{where}.{m['id']}")
        yield from retried_modules(v.get("modules") or [], f"{where}.{m['id']}")


def test_every_retried_step_stops_on_a_permanent_error():
    found = {}
    for file in sorted(ROOT.glob("f/**/*__flow/flow.yaml")):
        flow = yaml.safe_load(file.read_text())["value"]
        for where, retry in retried_modules(flow.get("modules") or [], file.parent.name):
            found[where] = (retry.get("retry_if") or {}).get("expr")
    assert {"webhook__flow.record", "webhook__flow.sinks.crm", "webhook__flow.sinks.notify"} <= set(found)
    assert found == dict.fromkeys(found, errors.RETRY_IF)


def steps_named(run, step: str) -> list:
    return [j for j in run.jobs if j.step_id == step]


def run_entry(config, sleeps, name="payment.succeeded"):
    quiet_wmill_client()
    runner = Runner(ROOT, config, sleep=sleeps.append, random=lambda: 0.5)
    return runner.run_flow(ENTRY, event=trigger_event(resign(name)))


def test_invalid_routing_fails_the_notify_step_at_once(db, outbox, sleeps):
    config = bundle_config(db.url, FIXTURE_SECRET)
    config.variables["f/dodo/notify_routing"] = '{"rules": [{"match": "*", "channels": ["pigeon"]}]}'
    run = run_entry(config, sleeps)
    assert not run.success
    [notify] = steps_named(run, "notify")  # once: no retry can fix a variable
    assert sleeps == []
    error = notify.result["error"]
    assert error["name"] == "RoutingError" and error["extra"]["permanent"] is True
    assert "fix the variable f/dodo/notify_routing" in error["message"]
    row = inbox(db, webhook_id("payment.succeeded"))
    assert row["status"] == "failed" and row["failed_step"] == "notify"


def test_a_missing_resource_fails_the_record_step_at_once(db, outbox, sleeps):
    """Windmill fails a job whose `$res:` path does not exist before the script runs
    (common.rs transform_json); no retry can create the resource, so none is waited for."""
    config = bundle_config(db.url, FIXTURE_SECRET)
    del config.resources["f/dodo/postgres"]
    run = run_entry(config, sleeps)
    assert not run.success
    [record] = steps_named(run, "record")
    assert sleeps == []
    assert "Resource f/dodo/postgres not found for `database`" in record.result["error"]["message"]


def hubspot_refusing(httpserver, status: int, body: dict):
    """HubSpot's contacts batch upsert answering `status` (its documented error body)."""
    seen = []

    def handler(request: Request) -> Response:
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
        inputs = json.loads(request.get_data())["inputs"]
        assert inputs and inputs[0]["idProperty"] == "email"
        seen.append(inputs[0]["id"])
        return Response(json.dumps(body), status=status, content_type="application/json")

    httpserver.expect_request("/crm/v3/objects/contacts/batch/upsert", method="POST").respond_with_handler(handler)
    return seen


def test_a_hubspot_4xx_fails_the_crm_step_at_once_naming_the_fix(db, outbox, sleeps, httpserver, monkeypatch):
    monkeypatch.setenv("DODO_HUBSPOT_API_URL", httpserver.url_for(""))
    seen = hubspot_refusing(httpserver, 401, {"status": "error", "category": "INVALID_AUTHENTICATION",
                                              "message": "Authentication credentials not found."})
    run = run_entry(bundle_config(db.url, FIXTURE_SECRET, {"HUBSPOT_TOKEN": TOKEN}), sleeps)
    httpserver.check_assertions()
    assert not run.success
    [crm] = steps_named(run, "crm")
    assert sleeps == [] and len(seen) == 1  # one request, no step retry
    error = crm.result["error"]
    assert error["name"] == "SyncError" and error["extra"]["permanent"] is True
    assert "HubSpot 401 INVALID_AUTHENTICATION" in error["message"]
    assert "check the private-app token in the resource f/dodo/hubspot" in error["message"]
    assert TOKEN not in json.dumps(run.result)


def test_what_is_permanent_and_what_is_not():
    assert errors.is_permanent(hubspot.HubSpotError(400, "Property values were not valid"))
    for status in (429, 500, 502, 503):  # an outage or a rate limit: retried
        assert not errors.is_permanent(hubspot.HubSpotError(status, "busy"))
    assert errors.is_permanent(routing.RoutingError("routing: not valid JSON"))
    assert errors.is_permanent(errors.SchemaBehind("behind"))
    assert not errors.is_permanent(ConnectionError("Postgres restarting"))

    class Attr(Exception):
        permanent = True  # a class attribute is not in Windmill's `extra`: not permanent
    assert not errors.is_permanent(Attr())


def test_a_permanent_send_failure_is_reported_by_the_ledger(db):
    def refused():
        raise hubspot.HubSpotError(403, "This app hasn't been granted all required scopes")

    def down():
        raise hubspot.HubSpotError(503, "unavailable")

    assert ledger.deliver_once(db.conn, "msg_p", "crm", "hubspot", refused)["permanent"] is True
    assert "permanent" not in ledger.deliver_once(db.conn, "msg_t", "crm", "hubspot", down)
    assert "permanent" not in ledger.deliver_once(None, "msg_t", "crm", "hubspot", down)
