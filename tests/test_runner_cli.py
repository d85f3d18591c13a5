"""The runner's configuration from the environment and its CLI."""
import json
import subprocess
import sys
from pathlib import Path

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
