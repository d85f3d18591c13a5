"""f/dodo/setup through the local runner, against the Dodo API stand-in's webhook endpoints
(request shapes of the dodopayments SDK) and the runner's Windmill variable API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from f.dodo.lib import schema as migrations
from local_runner import Config, Runner
from local_runner.demo import quiet_wmill_client
from tests.dodo_api_standin import DodoApi

ROOT = Path(__file__).resolve().parent.parent
URL = "https://windmill.example.com/api/r/dodo/webhook"
SECRET, PREVIOUS = "f/dodo/webhook_secret", "f/dodo/webhook_secret_previous"


def local_workspace(db):
    quiet_wmill_client()
    cfg = Config.from_env({"DATABASE_URL": db.url, "WM_WORKSPACE": "acme"}, root=ROOT)
    return cfg, Runner(ROOT, cfg)


@pytest.fixture
def workspace(db):
    return local_workspace(db)


def run_setup(runner, api, db, **args):
    out = runner.run_script("f/dodo/setup", {"dodo": api.resource, "db": "$res:f/dodo/postgres",
                                             "webhook_url": URL, "schema": db.schema, **args})
    return out


def steps(result: dict) -> dict[str, dict]:
    return {row["step"]: row for row in result["render_all"][1]["table-row-object"]}


def doctor_rows(result: dict) -> dict[str, dict]:
    return {row["name"]: row for row in result["render_all"][3]["table-row-object"]}


def test_first_run_creates_endpoint_stores_secret_migrates_and_reports(make_db, httpserver):
    db = make_db(migrate=False)  # a new database: setup must migrate it
    cfg, runner = local_workspace(db)
    api = DodoApi(httpserver)
    out = run_setup(runner, api, db, event_types=["payment.succeeded", "dispute.*"])
    assert out.success, out.result
    [(method, path, body)] = api.writes
    assert (method, path) == ("POST", "/webhooks")
    assert body["url"] == URL
    assert body["filter_types"] == sorted(["payment.succeeded", "dispute.opened", "dispute.expired",
                                           "dispute.accepted", "dispute.cancelled", "dispute.challenged",
                                           "dispute.won", "dispute.lost"])
    assert body["metadata"] == {"windmill_workspace": "acme", "windmill_flow": "f/dodo/webhook", "mode": "test_mode"}
    [wid] = api.webhooks
    assert cfg.variables[SECRET] == api.secrets[wid]
    assert SECRET in cfg.secret_paths and PREVIOUS not in cfg.variables
    assert cfg.variables["f/dodo/dodo_mode"] == "test_mode"
    assert len(migrations.applied(db.conn, db.schema)) == len(migrations.MIGRATIONS)
    assert steps(out.result)["Dodo endpoint"]["outcome"] == "created"
    assert doctor_rows(out.result)["dodo endpoint secret"]["status"] == "ok"
    assert api.secrets[wid] not in json.dumps(out.result)


def test_second_run_changes_nothing_and_never_duplicates(workspace, db, httpserver):
    cfg, runner = workspace
    api = DodoApi(httpserver)
    assert run_setup(runner, api, db).success
    again = run_setup(runner, api, db)
    assert again.success, again.result
    assert len(api.webhooks) == 1 and [m for m, _, _ in api.writes] == ["POST"]
    assert steps(again.result)["Dodo endpoint"]["outcome"] == "unchanged"
    assert steps(again.result)["signing secret"]["outcome"] == "unchanged"
    assert PREVIOUS not in cfg.variables


def test_rotated_secret_and_new_event_types_update_in_place(workspace, db, httpserver):
    cfg, runner = workspace
    api = DodoApi(httpserver)
    assert run_setup(runner, api, db).success
    [wid] = api.webhooks
    old = cfg.variables[SECRET]
    new = api.rotate_secret(wid)
    out = run_setup(runner, api, db, event_types=["refund.succeeded"])
    assert out.success, out.result
    assert api.writes[-1] == ("PATCH", f"/webhooks/{wid}", {"filter_types": ["refund.succeeded"]})
    assert (cfg.variables[SECRET], cfg.variables[PREVIOUS]) == (new, old)
    assert {SECRET, PREVIOUS} <= cfg.secret_paths
    assert steps(out.result)["signing secret"]["outcome"] == "rotated"


def test_dashboard_endpoint_with_the_same_url_is_adopted(workspace, db, httpserver):
    cfg, runner = workspace
    api = DodoApi(httpserver)
    wid = api.add_webhook(URL + "?token=old", disabled=True)
    out = run_setup(runner, api, db)
    assert out.success, out.result
    assert list(api.webhooks) == [wid] and api.webhooks[wid]["url"] == URL and not api.webhooks[wid]["disabled"]
    assert [m for m, _, _ in api.writes] == ["PATCH"]
    assert cfg.variables[SECRET] == api.secrets[wid]


def test_other_mode_is_refused_with_the_fix(workspace, db, httpserver):
    cfg, runner = workspace
    api = DodoApi(httpserver)
    assert run_setup(runner, api, db).success
    live = DodoApi(httpserver, environment="live_mode")
    out = run_setup(runner, live, db)
    assert not out.success
    assert out.result["error"]["name"] == "SetupError"
    assert "second workspace" in out.result["error"]["message"] and "switch_mode" in out.result["error"]["message"]
    assert cfg.variables["f/dodo/dodo_mode"] == "test_mode"


@pytest.mark.parametrize("args,words", [
    ({"event_types": ["payment.exploded"]}, "payment.exploded"),
    ({"webhook_url": ""}, "WM_BASE_URL"),
])
def test_bad_settings_name_the_fix(workspace, db, httpserver, args, words, monkeypatch):
    monkeypatch.delenv("WM_BASE_URL", raising=False)
    _, runner = workspace
    api = DodoApi(httpserver)
    out = run_setup(runner, api, db, **args)
    assert not out.success and words in out.result["error"]["message"]
    assert api.writes == []


@pytest.mark.parametrize("cursor", [lambda n: f"ep_{n:05d}", lambda n: "ep_same"], ids=["endless", "repeated"])
def test_an_endpoint_list_that_never_ends_is_an_error_not_a_loop(workspace, db, httpserver, cursor):
    _, runner = workspace
    api = DodoApi(httpserver)
    api.endless_webhook_pages = cursor
    out = run_setup(runner, api, db)
    assert not out.success and out.result["error"]["name"] == "SetupError"
    assert "did not end" in out.result["error"]["message"] and "delete unused endpoints" in out.result["error"]["message"]
    pages = [path for path, _ in api.requests if path == "/webhooks"]
    assert 1 < len(pages) <= 50
    assert api.writes == []


def test_endpoint_url_from_windmill_base(monkeypatch):
    from f.dodo.lib import setup  # noqa: PLC0415

    assert setup.endpoint_url("https://wm.acme.io/", "acme") == "https://wm.acme.io/api/r/dodo/webhook"
    assert setup.endpoint_url("https://app.windmill.dev", "acme") == "https://app.windmill.dev/api/r/acme/dodo/webhook"
