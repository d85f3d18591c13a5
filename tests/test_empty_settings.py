"""An optional variable or resource that exists but is empty counts as not configured.

Windmill lets both exist empty (a variable created without a value, a resource saved
with blank fields), and the preprocessor only asks whether they exist
(workspace.integration_refs): the steps, the scheduled scripts and the doctor read an
empty one as absent (resources.configured), so it neither fails deliveries nor pages."""

import pytest

from f.dodo.lib import doctor
from f.dodo.lib.resources import configured
from tests.fixture_data import resign
from tests.test_flows_e2e import ENTRY, HOT_PATH, trigger_event

BLANK = {"f/dodo/posthog": {"api_key": "", "host": ""}, "f/dodo/slack": {"token": ""},
         "f/dodo/smtp": {"host": " ", "port": None}}


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


@pytest.mark.parametrize("value,expected", [
    ("", None), ("  \n", None), ({}, None), ({"api_key": "", "host": None, "tags": []}, None),
    ("https://hooks.slack.com/services/T/B/x", "https://hooks.slack.com/services/T/B/x"),
    ({"host": "", "port": 587}, {"host": "", "port": 587}), ({"token": "xoxb-1"}, {"token": "xoxb-1"}),
])
def test_configured(value, expected):
    assert configured(value) == expected


def test_empty_integrations_are_skipped_by_the_entry_flow(runner, db, httpserver):
    runner.config.variables["f/dodo/slack_webhook_url"] = "  "
    runner.config.resources.update(BLANK)
    run = runner.run_flow(ENTRY, event=trigger_event(resign("dispute.opened")))
    assert run.success, run.result
    assert run.job_count == HOT_PATH
    [(status,)] = db.conn.execute("SELECT status FROM webhook_events").fetchall()
    assert status == "processed"
    ledger = dict(db.conn.execute("SELECT channel, status FROM delivery_ledger WHERE sink = 'notify'").fetchall())
    assert ledger and set(ledger.values()) == {"skipped"}, ledger
    assert db.conn.execute("SELECT count(*) FROM delivery_ledger WHERE channel = 'posthog'").fetchone()[0] == 0


def test_the_doctor_reads_empty_settings_as_not_configured():
    variables = {"f/dodo/slack_webhook_url": ""}
    found = {c.name: c for c in doctor.check_all(variables.get, BLANK.get, lambda r: None, schema="dodo",
                                                 probe=False)}
    assert "f/dodo/slack_webhook_url" not in found
    assert (found["f/dodo/slack"].status, found["f/dodo/smtp"].status) == ("skip", "skip")
    assert "empty" in found["f/dodo/slack"].detail


def test_workspace_lookups_read_empty_as_not_configured(httpserver, monkeypatch):
    """The scheduled scripts' lookups (report, digest, alerts, heal) through Windmill's API."""
    import json  # noqa: PLC0415

    from werkzeug import Response  # noqa: PLC0415

    from f.dodo.lib import workspace as ws  # noqa: PLC0415

    monkeypatch.setenv("WM_BASE_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("WM_WORKSPACE", "ws")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    monkeypatch.delenv("BASE_INTERNAL_URL", raising=False)
    httpserver.expect_request("/api/w/ws/variables/get_value/f/dodo/slack_webhook_url", method="GET") \
        .respond_with_response(Response(json.dumps(""), 200, content_type="application/json"))
    for path, value in BLANK.items():
        httpserver.expect_request(f"/api/w/ws/resources/get_value_interpolated/{path}", method="GET") \
            .respond_with_response(Response(json.dumps(value), 200, content_type="application/json"))
    found, skipped = ws.message_channels()
    assert found == {"slack": None, "smtp": None, "slack_webhook_url": None}
    assert len(skipped) == 2
