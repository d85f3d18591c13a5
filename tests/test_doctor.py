"""The doctor: every required and optional setting, against a real Postgres and a Dodo API stand-in."""

from __future__ import annotations

import base64
import json
import socket

import pytest
import wmill.client

from f.dodo import doctor as entry
from f.dodo.lib import db as pg
from f.dodo.lib import doctor
from tests.dodo_api_standin import DodoApi

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PREVIOUS = "whsec_" + base64.b64encode(b"p" * 24).decode()


def table(result: dict) -> dict[str, dict]:
    assert list(result) == ["render_all"]
    return {row["name"]: row for row in result["render_all"][1]["table-row-object"]}


def checks(variables: dict, resources: dict, schema: str, probe: bool = True) -> dict[str, doctor.Check]:
    found = doctor.check_all(variables.get, resources.get, lambda r: pg.connect(r, schema, check=False),
                             schema=schema, probe=probe)
    return {c.name: c for c in found}


@pytest.mark.parametrize("value,status,words", [
    (None, "fail", "not set"),
    ("", "fail", "not set"),
    ("abc123", "fail", "whsec_"),
    ("whsec_not*base64!", "fail", "base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "warn", "5 bytes"),
    (SECRET, "ok", "32-byte"),
])
def test_webhook_secret_format(value, status, words):
    c = doctor.check_secret("f/dodo/webhook_secret", value, required=True)
    assert c.status == status and words in c.detail
    if value:
        assert value not in c.detail and value.removeprefix("whsec_") not in c.detail


def test_complete_configuration_is_all_ok(make_db, httpserver):
    db = make_db()
    api = DodoApi(httpserver, {"payments": {}, "subscriptions": {}, "refunds": {}, "disputes": {}})
    found = checks(
        {"f/dodo/webhook_secret": SECRET, "f/dodo/webhook_secret_previous": PREVIOUS,
         "f/dodo/notify_routing": json.dumps({"rules": [{"match": "dispute.*", "channels": ["slack"]}]}),
         "f/dodo/webhook_tolerance_s": "300", "f/dodo/slack_webhook_url": "https://hooks.slack.com/services/T/B/x"},
        {"f/dodo/postgres": db.resource, "f/dodo/dodo_api": api.resource, "f/dodo/slack": {"token": "xoxb-1"},
         "f/dodo/smtp": {"host": "smtp.example.com", "port": 587}, "f/dodo/hubspot": {"token": "pat-1"},
         "f/dodo/twilio": {"accountSid": "AC1", "token": "t", "from_number": "+15550000000"}},
        db.schema)
    assert {n: c.status for n, c in found.items() if c.status != "ok"} == {}
    assert "migrated" in found["f/dodo/postgres"].detail
    assert "accepted" in found["f/dodo/dodo_api"].detail
    assert [p for p, _ in api.requests] == ["/payments"]


def test_missing_and_wrong_settings_are_named(make_db, httpserver):
    unmigrated = make_db(migrate=False)
    api = DodoApi(httpserver, {"payments": {}, "subscriptions": {}, "refunds": {}, "disputes": {}})
    found = checks(
        {"f/dodo/notify_routing": "{not json", "f/dodo/webhook_tolerance_s": "soon"},
        {"f/dodo/postgres": unmigrated.resource, "f/dodo/dodo_api": dict(api.resource, api_key="wrong"),
         "f/dodo/twilio": {"accountSid": "AC1", "token": "t"}, "f/dodo/smtp": {"port": 25}},
        unmigrated.schema)
    status = {n: c.status for n, c in found.items()}
    assert status == {
        "f/dodo/webhook_secret": "fail", "f/dodo/webhook_secret_previous": "skip",
        "f/dodo/webhook_tolerance_s": "fail", "f/dodo/postgres": "fail", "f/dodo/notify_routing": "fail",
        "f/dodo/dodo_api": "fail", "f/dodo/slack": "skip", "f/dodo/smtp": "fail", "f/dodo/twilio": "fail",
        "f/dodo/hubspot": "skip",
    }
    assert "f/dodo/migrate" in found["f/dodo/postgres"].fix
    assert "v001_tables" in found["f/dodo/postgres"].detail
    assert "401" in found["f/dodo/dodo_api"].detail and "wrong" not in found["f/dodo/dodo_api"].detail
    assert "from_number or messaging_service_sid" in found["f/dodo/twilio"].detail
    assert "not valid JSON" in found["f/dodo/notify_routing"].detail


def test_unreachable_postgres(make_db):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    resource = {"host": "127.0.0.1", "port": port, "user": "u", "password": "hunter2-secret", "dbname": "d"}
    c = checks({}, {"f/dodo/postgres": resource}, "dodo")["f/dodo/postgres"]
    assert c.status == "fail" and "DatabaseUnreachable" in c.detail and "hunter2-secret" not in c.detail
    assert f"cannot connect to 127.0.0.1:{port}/d" in c.detail and "start the server" in c.detail


def test_entry_script_reads_windmill_and_never_shows_secrets(make_db, monkeypatch, tmp_path):
    db = make_db()
    mocked = tmp_path / "wmill.json"
    mocked.write_text(json.dumps({"variables": {"f/dodo/webhook_secret": SECRET},
                                  "resources": {"f/dodo/postgres": db.resource}}))
    for key, value in {"WM_MOCKED_API_FILE": str(mocked), "WM_WORKSPACE": "test", "WM_TOKEN": "job-token",
                       "BASE_INTERNAL_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(wmill.client, "_client", None)
    result = entry.main(schema=db.schema)
    rows = table(result)
    assert rows["f/dodo/webhook_secret"]["status"] == "ok"
    assert rows["f/dodo/postgres"]["status"] == "ok"
    assert rows["f/dodo/slack"]["status"] == "skip"  # live Slack probes: tests/test_doctor_live.py
    assert rows["f/dodo/dodo_api"]["status"] == "skip"
    assert "All required configuration is in place" in result["render_all"][0]["markdown"]
    text = json.dumps(result)
    for secret in (SECRET, SECRET[6:], db.resource.get("password") or "\0"):
        assert secret not in text
