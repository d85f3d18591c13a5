"""The runner's configuration from the environment and its CLI."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

from local_runner import Config

ROOT = Path(__file__).parent / "flows"


def test_env_maps_to_windmill_variables_and_resources(tmp_path):
    file = tmp_path / "local.yaml"
    file.write_text("variables: {f/x/v: from-file}\nresources: {f/x/r: {a: 1}}\n")
    cfg = Config.from_env({"DODO_WEBHOOK_SECRET": "whsec_a", "DODO_WEBHOOK_SECRET_PREVIOUS": "whsec_b",
                           "DATABASE_URL": "postgresql://u%40x:p%2Fw@db.example:6543/dodo?sslmode=require",
                           "WM_WORKSPACE": "prod", "WM_LOCAL_CONFIG": str(file)})
    assert cfg.workspace == "prod"
    assert cfg.get_variable("f/dodo/webhook_secret") == "whsec_a"
    assert cfg.get_variable("f/dodo/webhook_secret_previous") == "whsec_b"
    assert cfg.get_resource("f/dodo/postgres") == {"host": "db.example", "port": 6543, "user": "u@x",
                                                   "password": "p/w", "dbname": "dodo", "sslmode": "require"}
    assert cfg.get_variable("f/x/v") == "from-file" and cfg.get_resource("f/x/r") == {"a": 1}


REPO = Path(__file__).parent.parent


def test_env_maps_integration_credentials_to_the_resources_the_sinks_read():
    cfg = Config.from_env({"HUBSPOT_TOKEN": "pat-1", "SLACK_TOKEN": "xoxb-1",
                           "SLACK_WEBHOOK_URL": "https://hooks.slack.test/T/B/x",
                           "SMTP_HOST": "smtp.test", "SMTP_PORT": "587", "SMTP_USER": "u", "SMTP_PASSWORD": "p",
                           "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "tw", "TWILIO_FROM": "+15550001111"})
    # field names: f/dodo/crm/sync_contact.py hubspot, f/dodo/notify/send.py slack/smtp/twilio
    assert cfg.get_resource("f/dodo/hubspot") == {"token": "pat-1"}
    assert cfg.get_resource("f/dodo/slack") == {"token": "xoxb-1"}
    assert cfg.get_resource("f/dodo/smtp") == {"host": "smtp.test", "port": 587, "user": "u", "password": "p"}
    assert cfg.get_resource("f/dodo/twilio") == {"accountSid": "AC1", "token": "tw", "from_number": "+15550001111"}
    assert cfg.get_variable("f/dodo/slack_webhook_url") == "https://hooks.slack.test/T/B/x"


def test_unset_credentials_leave_no_resource_so_the_sinks_use_the_outbox():
    cfg = Config.from_env({"SMTP_USER": "u", "TWILIO_FROM": "+1555"})  # no host / account: nothing usable
    assert cfg.resources == {} and "f/dodo/slack_webhook_url" not in cfg.variables


def test_the_bundle_s_non_secret_variables_are_loaded_and_the_environment_wins(tmp_path):
    shipped = yaml.safe_load((REPO / "f/dodo/notify_routing.variable.yaml").read_text())["value"]
    assert Config.from_env({}, root=REPO).get_variable("f/dodo/notify_routing") == shipped
    (tmp_path / "f/x").mkdir(parents=True)
    (tmp_path / "f/x/open.variable.yaml").write_text("value: shipped\nis_secret: false\n")
    (tmp_path / "f/x/secret.variable.yaml").write_text("value: not-pushed\nis_secret: true\n")
    cfg = Config.from_env({"DODO_WEBHOOK_SECRET": "whsec_env"}, root=tmp_path)
    assert cfg.variables == {"f/x/open": "shipped", "f/dodo/webhook_secret": "whsec_env"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "local_runner", *args], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120)


def test_cli_run_prints_result_and_jobs(tmp_path):
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps({"n": 42}))
    p = run_cli("run", "f/rt/branchone", "--root", str(ROOT), "--input", str(inp))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["result"] == ["big", "big"] and out["job_count"] == 4


def test_cli_failed_flow_exits_nonzero():
    p = run_cli("run", "f/rt/failure", "--root", str(ROOT))
    assert p.returncode == 1 and json.loads(p.stdout)["success"] is False
