"""The doctor's live checks: what would actually break a delivery, each failure with its fix.

Stand-ins: Slack `auth.test` (POST, bearer token), Twilio's account fetch (GET
/2010-04-01/Accounts/{sid}.json, basic auth), HubSpot's property list (GET
/crm/v3/properties/{object}, bearer), an aiosmtpd server that requires a login, the Dodo
API stand-in's webhook endpoints, and a real Postgres role with too few privileges.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import uuid

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from werkzeug.wrappers import Request, Response

from f.dodo.lib import db as pg
from f.dodo.lib import channels, doctor, hubspot
from tests.dodo_api_standin import DodoApi
from tests.provider_standins import SLACK_TOKEN as STANDIN_SLACK_TOKEN
from tests.provider_standins import SlackApi

SLACK_TOKEN, HUBSPOT_TOKEN = "xoxb-live-token", "pat-live-token"
TWILIO = {"accountSid": "AC0123456789abcdef0123456789abcdef", "token": "twilio-secret", "from_number": "+15550001111"}
ROUTING = json.dumps({"rules": [{"match": "dispute.*", "channels": ["slack"]}]})
SECRETS = ("xoxb-live-token", "pat-live-token", "twilio-secret", "smtp-secret")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Accept:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


@pytest.fixture(scope="module")
def loopback_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (the openssl CLI), for the SMTP stand-in's STARTTLS."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def smtp_login(loopback_cert, monkeypatch):
    """An SMTP server that requires STARTTLS and accepts only user `bot` with password `smtp-secret`;
    the bundle's TLS context trusts its certificate (as a real server's CA would be)."""
    def authenticate(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"bot", b"smtp-secret"), handled=False)

    cert, key = loopback_cert
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setattr(channels, "_tls", ssl.create_default_context(cafile=str(cert)))
    port = free_port()
    controller = Controller(Accept(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            tls_context=server_tls, require_starttls=True)
    controller.start()
    yield {"host": "127.0.0.1", "port": port, "user": "bot", "password": "smtp-secret"}
    controller.stop()


def providers(httpserver, properties: dict[str, set[str]]):
    def slack(request: Request) -> Response:
        ok = request.headers.get("Authorization") == f"Bearer {SLACK_TOKEN}"
        body = {"ok": True, "team": "Acme", "user": "dodo-bot"} if ok else {"ok": False, "error": "invalid_auth"}
        return Response(json.dumps(body), 200, content_type="application/json",
                        headers={"x-oauth-scopes": "chat:write,files:write,channels:read"} if ok else {})

    def twilio(request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{TWILIO['accountSid']}:{TWILIO['token']}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Response(json.dumps({"code": 20003, "message": "Authenticate"}), 401,
                            content_type="application/json")
        return Response(json.dumps({"sid": TWILIO["accountSid"], "status": "active"}), 200,
                        content_type="application/json")

    def hub(object_type: str):
        def handle(request: Request) -> Response:
            if request.headers.get("Authorization") != f"Bearer {HUBSPOT_TOKEN}":
                return Response(json.dumps({"status": "error", "message": "Authentication credentials not found.",
                                            "category": "INVALID_AUTHENTICATION"}), 401,
                                content_type="application/json")
            results = [{"name": n, "label": n} for n in sorted(properties[object_type])]
            return Response(json.dumps({"results": results}), 200, content_type="application/json")
        return handle

    httpserver.expect_request("/slack/auth.test", method="POST").respond_with_handler(slack)
    httpserver.expect_request(f"/twilio/2010-04-01/Accounts/{TWILIO['accountSid']}.json",
                              method="GET").respond_with_handler(twilio)
    for object_type in ("contacts", "notes"):
        httpserver.expect_request(f"/hubspot/crm/v3/properties/{object_type}", method="GET").respond_with_handler(
            hub(object_type))
    base = httpserver.url_for("/").rstrip("/")
    return dict(slack_api=f"{base}/slack", twilio_api=f"{base}/twilio", hubspot_api=f"{base}/hubspot")


ALL_PROPERTIES = {"contacts": set(hubspot.CONTACT_PROPERTIES) | {"email"}, "notes": set(hubspot.NOTE_PROPERTIES)}
SCHEDULES = [{"path": "f/dodo/revenue_report", "enabled": True,
              "args": {"db": "$res:f/dodo/postgres", "slack": "$res:f/dodo/slack", "smtp": "$res:f/dodo/smtp",
                       "routing": "$var:f/dodo/notify_routing"}}]


def run(variables, resources, schema, live):
    found = doctor.check_all(variables.get, resources.get, lambda r: pg.connect(r, schema, check=False),
                             schema=schema, live=live)
    return {c.name: c for c in found}


def configured(db, api, smtp, hub_token=HUBSPOT_TOKEN, slack_token=SLACK_TOKEN, twilio=TWILIO):
    return {"f/dodo/postgres": db.resource, "f/dodo/dodo_api": api.resource, "f/dodo/slack": {"token": slack_token},
            "f/dodo/smtp": smtp, "f/dodo/hubspot": {"token": hub_token}, "f/dodo/twilio": twilio}


def test_everything_live_and_right_is_ok(db, httpserver, smtp_login):
    urls = providers(httpserver, ALL_PROPERTIES)
    api = DodoApi(httpserver)
    wid = api.add_webhook("https://wm.example.com/api/r/dodo/webhook",
                          metadata={"windmill_workspace": "acme", "windmill_flow": "f/dodo/webhook"})
    live = doctor.Live(workspace="acme", webhook_url="https://wm.example.com/api/r/dodo/webhook",
                       schedules=SCHEDULES, **urls)
    found = run({"f/dodo/webhook_secret": api.secrets[wid], "f/dodo/notify_routing": ROUTING},
                configured(db, api, smtp_login), db.schema, live)
    assert {n: (c.status, c.detail) for n, c in found.items() if c.status != "ok"} == {
        "f/dodo/webhook_secret_previous": ("skip", "not set (optional)")}
    assert "role can write" in found["f/dodo/postgres"].detail
    assert "auth.test ok" in found["f/dodo/slack"].detail and "login accepted" in found["f/dodo/smtp"].detail
    assert found["schedule f/dodo/revenue_report"].status == "ok"


def test_each_broken_setting_fails_with_its_fix(db, httpserver, smtp_login):
    properties = {"contacts": ALL_PROPERTIES["contacts"] - {"dodo_mrr"}, "notes": ALL_PROPERTIES["notes"]}
    urls = providers(httpserver, properties)
    api = DodoApi(httpserver)
    wid = api.add_webhook("https://wm.example.com/api/r/dodo/webhook")  # found by its URL
    stale = api.secrets[wid]
    api.rotate_secret(wid)  # rotated in the dashboard; the workspace still holds the old one
    live = doctor.Live(workspace="acme", webhook_url="https://wm.example.com/api/r/dodo/webhook",
                       schedules=SCHEDULES, **urls)
    resources = configured(db, api, dict(smtp_login, password="wrong"), slack_token="xoxb-revoked",
                           twilio=dict(TWILIO, token="old"))
    del resources["f/dodo/slack"]
    found = run({"f/dodo/webhook_secret": stale}, resources, db.schema, live)
    failed = {n: c for n, c in found.items() if c.status == "fail"}
    assert set(failed) == {"dodo endpoint secret", "f/dodo/smtp", "f/dodo/twilio", "f/dodo/hubspot",
                           "schedule f/dodo/revenue_report"}
    assert "differs from Dodo's" in failed["dodo endpoint secret"].detail
    assert "f/dodo/setup" in failed["dodo endpoint secret"].fix
    assert "refused the login" in failed["f/dodo/smtp"].detail and "password" in failed["f/dodo/smtp"].fix
    assert "401" in failed["f/dodo/twilio"].detail
    assert "contacts.dodo_mrr" in failed["f/dodo/hubspot"].detail
    assert "f/dodo/crm/hubspot_setup" in failed["f/dodo/hubspot"].fix
    assert "$res:f/dodo/slack" in failed["schedule f/dodo/revenue_report"].detail
    assert all(c.fix.count(".") <= 2 and c.fix for c in failed.values())  # one sentence each
    text = json.dumps(doctor.summary(list(found.values())))
    assert all(s not in text for s in (*SECRETS, stale, api.secrets[wid], "wrong"))


def test_revoked_slack_and_hubspot_tokens(db, httpserver):
    urls = providers(httpserver, ALL_PROPERTIES)
    live = doctor.Live(workspace="acme", **urls)
    found = run({}, {"f/dodo/slack": {"token": "xoxb-revoked"}, "f/dodo/hubspot": {"token": "pat-revoked"}},
                db.schema, live)
    assert (found["f/dodo/slack"].status, found["f/dodo/hubspot"].status) == ("fail", "fail")
    assert "invalid_auth" in found["f/dodo/slack"].detail and "f/dodo/slack" in found["f/dodo/slack"].fix
    assert "401" in found["f/dodo/hubspot"].detail and "private-app token" in found["f/dodo/hubspot"].fix


@pytest.mark.parametrize("scopes,missing", [(("chat:write",), "files:write"), (("files:write",), "chat:write")])
def test_a_slack_token_without_a_scope_the_bundle_uses_fails_with_the_fix(httpserver, scopes, missing):
    slack = SlackApi(httpserver, scopes=scopes)
    live = doctor.Live(workspace="acme", slack_api=slack.url)
    [check] = [c for c in doctor.check_all({}.get, {"f/dodo/slack": {"token": STANDIN_SLACK_TOKEN}}.get,
                                           lambda r: None, live=live) if c.name == "f/dodo/slack"]
    assert check.status == "fail" and f"lacks the scope {missing}" in check.detail
    assert missing in check.fix and "reinstall" in check.fix and check.fix.count(".") <= 1
    assert STANDIN_SLACK_TOKEN not in check.detail + check.fix


def test_a_slack_token_with_the_scopes_is_ok(httpserver):
    slack = SlackApi(httpserver)
    check = doctor.check_slack({"token": STANDIN_SLACK_TOKEN}, doctor.Live(slack_api=slack.url))
    assert check.status == "ok" and "has chat:write, files:write" in check.detail


def test_role_that_cannot_write_fails_with_the_grant(db, pg_url):
    role = f"ro_{uuid.uuid4().hex[:8]}"
    with pg.connect(pg_url, check=False) as admin:
        admin.execute(f"CREATE ROLE {pg.ident(role)} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA {pg.ident(db.schema)} TO {pg.ident(role)}")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {pg.ident(db.schema)} TO {pg.ident(role)}")
    try:
        resource = dict(db.resource, user=role)
        c = run({}, {"f/dodo/postgres": resource}, db.schema, None)["f/dodo/postgres"]
        assert c.status == "fail"
        assert "INSERT on customers" in c.detail and "SELECT on" not in c.detail
        assert c.fix.startswith("GRANT SELECT, INSERT, UPDATE") and db.schema in c.fix
    finally:
        with pg.connect(pg_url, check=False) as admin:
            admin.execute(f"DROP OWNED BY {pg.ident(role)}")
            admin.execute(f"DROP ROLE {pg.ident(role)}")


def test_smtp_without_tls_fails_before_sending_the_password(db):
    logins = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append(mechanism)
        return AuthResult(success=True, handled=False)

    port = free_port()
    controller = Controller(Accept(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        smtp = {"host": "127.0.0.1", "port": port, "user": "bot", "password": "smtp-secret"}
        c = run({}, {"f/dodo/smtp": smtp}, db.schema, doctor.Live())["f/dodo/smtp"]
    finally:
        controller.stop()
    assert c.status == "fail" and "STARTTLS" in c.detail and "465" in c.fix
    assert logins == [] and "smtp-secret" not in c.detail
