"""`python -m local_runner run` (any script or flow, --arg/--input, the bundle's variables),
`send` (a signed delivery to the local server), and configuration errors that say what to
do in one line, without a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fixture_data import FIXTURE_SECRET, load_delivery, sign

from f.dodo.lib import signature as sig
from f.dodo.lib import schema as migrations
from local_runner import Config, Runner
from local_runner.__main__ import main as cli
from local_runner.demo import quiet_wmill_client
from local_runner.server import App, make_server

REPO = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*argv, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local_runner", *argv], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_run_a_script_with_args_and_the_bundles_variables(make_db, pg_url):
    db = make_db(migrate=False)
    out = run_cli("run", "f/dodo/migrate", "--arg", "db=$res:f/dodo/postgres", "--arg", f"schema={db.schema}",
                  env={"DATABASE_URL": pg_url})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]
    assert result["schema"] == db.schema and result["applied"][0] == "v001_tables"
    assert migrations.applied(db.conn, db.schema)


@pytest.mark.parametrize("schema_name", ["dodo"])  # the flow's steps use the scripts' default schema
def test_run_a_flow_with_an_input_file(db, pg_url, tmp_path):
    event = json.loads(load_delivery("payment.succeeded")["body"])
    (tmp_path / "in.json").write_text(json.dumps({"event": event}))
    out = run_cli("run", "f/dodo/record", "--input", str(tmp_path / "in.json"), "--arg", "webhook_id=msg_cli_flow",
                  env={"DATABASE_URL": pg_url})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["success"] and [j["step_id"] for j in report["jobs"][1:]] == ["normalize", "record"]
    row = db.conn.execute("SELECT status FROM webhook_events WHERE webhook_id = 'msg_cli_flow'").fetchone()
    assert row == ("processed",)
    assert db.conn.execute("SELECT count(*) FROM payments WHERE payment_id = %s",
                           [event["data"]["payment_id"]]).fetchone()[0] == 1


def test_dead_database_url_is_one_line_with_the_fix():
    out = run_cli("run", "f/dodo/migrate", "--arg", "db=$res:f/dodo/postgres",
                  env={"DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{closed_port()}/x"})
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: DatabaseUnreachable: ") and "DATABASE_URL" in line and "start the server" in line
    assert "Traceback" not in out.stdout + out.stderr and "hunter2" not in out.stdout + out.stderr
    assert '"stack"' not in out.stdout


def test_missing_secret_names_the_variable_and_setup(db):
    quiet_wmill_client()
    runner = Runner(REPO, Config(resources={"f/dodo/postgres": db.resource}))
    body = load_delivery("payment.succeeded")["body"]
    from test_flows_e2e import trigger_event  # noqa: PLC0415

    run = runner.run_flow("f/dodo/webhook", event=trigger_event({"body": body, "headers": sign(body, FIXTURE_SECRET,
                                                                                                  "msg_nosecret")}))
    pre = next(j for j in run.jobs if j.kind == "preprocessor")
    assert pre.result["error"]["name"] == "SecretConfigError"
    message = pre.result["error"]["message"]
    assert "f/dodo/webhook_secret is not set" in message and "run f/dodo/setup" in message and "\n" not in message
    # the previous secret alone never verifies: a lost current secret is a configuration error
    runner.config.variables["f/dodo/webhook_secret_previous"] = FIXTURE_SECRET
    again = runner.run_flow("f/dodo/webhook", event=trigger_event(
        {"body": body, "headers": sign(body, FIXTURE_SECRET, "msg_nosecret2")}))
    pre = next(j for j in again.jobs if j.kind == "preprocessor")
    assert not again.success and pre.result["error"]["name"] == "SecretConfigError"


def test_signature_mismatch_and_empty_body_say_what_to_do():
    body = load_delivery("payment.succeeded")["body"]
    other = "whsec_" + "b" * 43 + "="
    with pytest.raises(sig.SignatureMismatchError) as mismatch:
        sig.verify_delivery(body, sign(body, FIXTURE_SECRET, "msg_1"), [other])
    assert "f/dodo/webhook_secret" in str(mismatch.value) and "run f/dodo/setup" in str(mismatch.value)
    with pytest.raises(sig.InvalidBodyError) as empty:
        sig.verify_delivery("", sign("", FIXTURE_SECRET, "msg_2"), [FIXTURE_SECRET])
    assert str(empty.value).startswith("body: empty") and "raw=true" in str(empty.value)


def test_unreachable_dodo_api_names_the_resource(db):
    quiet_wmill_client()
    runner = Runner(REPO, Config(resources={"f/dodo/postgres": db.resource}, workspace="acme"))
    dodo = {"api_key": "k", "environment": "test_mode", "base_url": f"http://127.0.0.1:{closed_port()}"}
    out = runner.run_script("f/dodo/setup", {"dodo": dodo, "db": "$res:f/dodo/postgres",
                                             "webhook_url": "https://wm.example.com/api/r/dodo/webhook"})
    assert out.result["error"]["name"] == "ConfigError"
    assert out.result["error"]["message"].startswith("the dodo_payments resource: the Dodo API (http://127.0.0.1:")
    assert "unreachable" in out.result["error"]["message"] and "environment" in out.result["error"]["message"]


@pytest.mark.parametrize("schema_name", ["dodo"])  # the entry flow records into the default schema
def test_send_posts_a_signed_delivery_that_the_server_records(db, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    config = Config.from_env({"DATABASE_URL": db.url, "DODO_WEBHOOK_SECRET": FIXTURE_SECRET}, root=REPO)
    app = App(Runner(REPO, config, sleep=lambda _s: None), workers=1, queue_size=10)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DODO_WEBHOOK_SECRET", FIXTURE_SECRET)
    monkeypatch.setenv("PORT", str(server.server_address[1]))
    monkeypatch.setenv("WM_WORKSPACE", app.workspace)
    try:
        assert cli(["send", "refund.succeeded", "--webhook-id", "msg_cli_send_1", "--root", str(REPO)]) == 0
        app.queue.join()
    finally:
        server.shutdown()
        server.server_close()
    assert capsys.readouterr().out.startswith("msg_cli_send_1 -> 201 ")
    row = db.conn.execute("SELECT status, event_type FROM webhook_events WHERE webhook_id = 'msg_cli_send_1'").fetchone()
    assert row == ("processed", "refund.succeeded")
    monkeypatch.delenv("DODO_WEBHOOK_SECRET")
    assert cli(["send", "refund.succeeded"]) == 2
    assert "DODO_WEBHOOK_SECRET: not set" in capsys.readouterr().err
