"""The self-test: a signed sample delivery to a webhook stand-in that verifies and records it."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import wmill.client
from werkzeug.wrappers import Request, Response

from f.dodo import send_test_event as entry
from f.dodo.lib import selftest, signature
from f.dodo.lib.errors import SignatureError
from f.dodo.lib.store import record_delivery
from local_runner import Config, Runner
from local_runner.config import bundle_variables
from local_runner.server import App, make_server
from tests.dodo_api_standin import DodoApi

SECRET = "whsec_" + base64.b64encode(b"selftest-secret-for-tests-only!!").decode()
PATH = "/api/w/demo/jobs/run/f/f/dodo/webhook"
ROOT = Path(__file__).resolve().parent.parent


class Bundle:
    """What the deployed webhook does with a delivery: verify the raw bytes, then record it."""

    def __init__(self, httpserver, db, secret: str = SECRET, record: bool = True, token: str | None = None):
        self.db, self.secret, self.record, self.token = db, secret, record, token
        self.requests: list[Request] = []
        httpserver.expect_request(PATH, method="POST").respond_with_handler(self.handle)
        self.url = httpserver.url_for(PATH)

    def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return Response("Unauthorized", 401)
        assert request.args.get("raw") == "true"
        assert request.args.get("include_header") == selftest.HEADERS
        try:
            event = signature.verify_delivery(request.get_data(), dict(request.headers), [self.secret])
        except SignatureError as exc:
            return Response(json.dumps({"error": str(exc)}), 400, content_type="application/json")
        if self.record:
            record_delivery(self.db.conn, event, request.headers["webhook-id"])
        return Response(str(uuid.uuid4()), 201, content_type="text/plain")


def lookup(db):
    return lambda webhook_id: selftest.inbox_row(db.conn, webhook_id)


def test_signed_event_arrives_and_is_processed(db, httpserver):
    bundle = Bundle(httpserver, db)
    out = selftest.send_test_event(bundle.url, SECRET, lookup(db), wait_s=5)
    assert out["ok"] and out["accepted"] and out["arrived"] and out["inbox_status"] == "processed"
    assert out["http_status"] == 201 and out["webhook_id"].startswith("msg_selftest_")
    # recorded in the inbox only: no payment, no customer (f/dodo/lib/probe.py)
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 0
    assert db.conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 0
    assert SECRET not in json.dumps(out)


def test_wrong_secret_is_rejected_and_reported(db, httpserver):
    bundle = Bundle(httpserver, db, secret="whsec_" + base64.b64encode(b"another-secret-entirely-32bytes!").decode())
    out = selftest.send_test_event(bundle.url, SECRET, lookup(db), wait_s=5)
    assert not out["ok"] and not out["accepted"] and not out["arrived"]
    assert out["http_status"] == 400 and "secret" in out["response"]
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0


def test_accepted_but_never_recorded(db, httpserver):
    bundle = Bundle(httpserver, db, record=False)
    out = selftest.send_test_event(bundle.url, SECRET, lookup(db), wait_s=0)
    assert out["accepted"] and not out["arrived"] and not out["ok"] and out["inbox_status"] is None
    assert len(bundle.requests) == 1


def test_url_gets_raw_and_headers_only_for_webhooks():
    url = selftest.webhook_url_with_params("https://wm.example/api/w/ws/jobs/run/f/f/dodo/webhook?token=abc")
    assert "token=abc" in url and "raw=true" in url and "include_header=webhook-id,webhook-timestamp" in url
    kept = "https://wm.example/api/w/ws/jobs/run/f/f/dodo/webhook?raw=true&include_header=webhook-id"
    assert selftest.webhook_url_with_params(kept) == kept
    route = "https://wm.example/api/r/ws/dodo/webhook"
    assert selftest.webhook_url_with_params(route) == route


def test_entry_script_uses_the_secret_variable_and_token(db, httpserver, monkeypatch, tmp_path):
    bundle = Bundle(httpserver, db, token="webhook-token-1")
    mocked = tmp_path / "wmill.json"
    mocked.write_text(json.dumps({"variables": {"f/dodo/webhook_secret": SECRET,
                                                "f/dodo/webhook_token": "webhook-token-1"}}))
    for key, value in {"WM_MOCKED_API_FILE": str(mocked), "WM_WORKSPACE": "demo", "WM_TOKEN": "job-token",
                       "BASE_INTERNAL_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(wmill.client, "_client", None)
    out = entry.main(bundle.url, db.resource, wait_seconds=5, token_variable="f/dodo/webhook_token",
                     schema=db.schema)
    assert out["ok"], out
    denied = entry.main(bundle.url, db.resource, wait_seconds=0, schema=db.schema)  # the job token is not it
    assert denied["http_status"] == 401 and not denied["ok"]
    assert "webhook-token-1" not in json.dumps([out, denied]) and "job-token" not in json.dumps(denied)


def test_sample_is_a_standard_webhooks_delivery():
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    body = json.dumps(selftest.sample_event("abc", at))
    headers = selftest.sign(body, SECRET, "msg_x", at)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    event = signature.verify_delivery(body, headers, [SECRET], now=int(at.timestamp()))
    assert event["type"] == "payment.succeeded" and event["data"]["total_amount"] == 0


@pytest.mark.parametrize("schema_name", ["dodo"])  # the entry flow records into the default schema
def test_end_to_end_through_the_local_windmill_server(db, monkeypatch, tmp_path):
    """The real f/dodo/webhook flow behind `make serve`'s HTTP server verifies and records it."""
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    # the workspace as pushed (the routing rules included), plus the secret
    config = Config(variables={**bundle_variables(ROOT), "f/dodo/webhook_secret": SECRET},
                    resources={"f/dodo/postgres": db.resource}, workspace="demo")
    app = App(Runner(ROOT, config, sleep=lambda _s: None), token="wm-token", workers=2, queue_size=10)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{PATH}"  # no raw/include_header: added
        out = selftest.send_test_event(url, SECRET, lookup(db), token="wm-token", wait_s=60)
        refused = selftest.send_test_event(url, SECRET, lookup(db), token="not-the-token", wait_s=0)
        app.queue.join()  # the whole flow, sinks included, ran to its end
        (job,) = app.jobs.values()
        assert job["success"], job["result"]
    finally:
        server.shutdown()
        server.server_close()
    assert out["http_status"] == 201 and out["ok"], out
    assert refused["http_status"] == 401 and not refused["arrived"]


def mocked_workspace(monkeypatch, tmp_path, variables: dict, resources: dict | None = None) -> None:
    mocked = tmp_path / "wmill.json"
    mocked.write_text(json.dumps({"variables": variables, "resources": resources or {}}))
    for key, value in {"WM_MOCKED_API_FILE": str(mocked), "WM_WORKSPACE": "acme", "WM_TOKEN": "job-token",
                       "BASE_INTERNAL_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(wmill.client, "_client", None)


def test_signs_with_dodos_secret_and_posts_where_dodo_posts(db, httpserver, monkeypatch, tmp_path):
    api = DodoApi(httpserver)
    wid = api.add_webhook("placeholder", metadata={"windmill_workspace": "acme", "windmill_flow": "f/dodo/webhook"})
    bundle = Bundle(httpserver, db, secret=api.secrets[wid])  # the workspace verifies with Dodo's secret
    api.webhooks[wid]["url"] = bundle.url
    mocked_workspace(monkeypatch, tmp_path, {"f/dodo/webhook_secret": api.secrets[wid]})
    out = entry.main(db=db.resource, wait_seconds=5, schema=db.schema, dodo=api.resource)
    assert out["ok"] and out["inbox_status"] == "processed", out
    assert "fetched from Dodo" in out["signed_with"] and "fix" not in out
    assert api.secrets[wid] not in json.dumps(out)


def test_a_stored_secret_that_differs_from_dodos_fails_with_the_fix(db, httpserver, monkeypatch, tmp_path):
    api = DodoApi(httpserver)
    wid = api.add_webhook("placeholder", metadata={"windmill_workspace": "acme", "windmill_flow": "f/dodo/webhook"})
    stale = api.secrets[wid]
    api.rotate_secret(wid)  # rotated in Dodo's dashboard; the workspace kept the old secret
    bundle = Bundle(httpserver, db, secret=stale)  # the preprocessor verifies with the stored one
    api.webhooks[wid]["url"] = bundle.url
    mocked_workspace(monkeypatch, tmp_path, {"f/dodo/webhook_secret": stale})
    out = entry.main(db=db.resource, wait_seconds=0, schema=db.schema, dodo=api.resource)
    assert not out["ok"] and not out["arrived"] and out["http_status"] == 400
    assert out["fix"] == "f/dodo/webhook_secret differs from Dodo's secret for the endpoint: run f/dodo/setup"
    # signing with the stored secret (the old self-test) would have passed: the check needs Dodo's
    assert selftest.send_test_event(bundle.url, stale, lookup(db), wait_s=5)["ok"]


@pytest.mark.parametrize("schema_name", ["dodo"])  # the entry flow records into the default schema
def test_the_test_delivery_is_never_counted(db, outbox):
    """Through the real entry flow: inbox only, no payment, customer, CRM write, notification or digest."""
    from local_runner.demo import bundle_config, quiet_wmill_client  # noqa: PLC0415
    from tests.test_flows_e2e import trigger_event  # noqa: PLC0415

    quiet_wmill_client()
    runner = Runner(ROOT, bundle_config(db.url, SECRET), sleep=lambda _s: None)
    now = datetime.now(timezone.utc)
    body = json.dumps(selftest.sample_event("zz1", now))
    probe = runner.run_flow("f/dodo/webhook", event=trigger_event(
        {"body": body, "headers": selftest.sign(body, SECRET, "msg_selftest_zz1", now)}))
    assert probe.success and probe.skipped
    assert {j.step_id for j in probe.jobs} & {"crm", "notify"} == set()
    assert selftest.inbox_row(db.conn, "msg_selftest_zz1")["status"] == "processed"
    for table in ("payments", "customers", "delivery_ledger"):
        assert db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    assert not outbox.exists() or outbox.read_text() == ""
    # The marker alone (a merchant's metadata) does not make a real delivery a test one.
    real = runner.run_flow("f/dodo/webhook", event=trigger_event(
        {"body": body, "headers": selftest.sign(body, SECRET, "msg_real_zz1", now)}))
    assert real.success and not real.skipped
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 1
