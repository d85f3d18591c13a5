"""`make serve` prints the Postgres URL it uses, and `--data-dir` keeps the embedded
server's data between runs: a delivery recorded in one run is there in the next."""

import os
import shutil
import tempfile

import psycopg2
import pytest

from f.dodo.lib import db as dblib
from f.dodo.lib import store
from f.dodo.lib.errors import ConfigError
from f.dodo.lib.normalizer import normalize_event
from local_runner.demo import ROOT
from local_runner.server import build, start_postgres
from tests.fixture_data import envelope

REPO = ROOT.parent.parent


@pytest.fixture
def data_dir():
    # Under /tmp and 0755: as root the server runs as another account that must reach it
    # (pytest's tmp_path is 0700).
    parent = tempfile.mkdtemp(prefix="dodo-serve-", dir="/tmp")
    os.chmod(parent, 0o755)
    yield os.path.join(parent, "pg")
    shutil.rmtree(parent, ignore_errors=True)


def _start(data_dir, capsys):
    env = {"WORKERS": "1", "PATH": os.environ.get("PATH", "")}
    app, pg = build(REPO, env, data_dir=data_dir)
    printed = capsys.readouterr().out
    assert pg is not None and f"postgres: {pg.url} (data kept in " in printed
    return app, pg


def test_data_dir_keeps_a_recorded_delivery_between_runs(data_dir, capsys):
    app, pg = _start(data_dir, capsys)
    try:
        with dblib.connect(app.runner.config.get_resource("f/dodo/postgres"), "dodo") as conn:
            assert store.record_event(conn, normalize_event(envelope("payment.succeeded"), "msg_kept"))["status"] == "recorded"
    finally:
        pg.stop()
    assert os.path.exists(os.path.join(data_dir, "PG_VERSION"))  # the data stays on stop

    app, pg = _start(data_dir, capsys)  # a new run, probably another port, the same data
    try:
        with psycopg2.connect(pg.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT webhook_id FROM dodo.webhook_events")
            assert cur.fetchall() == [("msg_kept",)]
    finally:
        pg.stop()


def test_a_database_url_is_printed_without_its_password_and_excludes_data_dir():
    pg, line = start_postgres({"DATABASE_URL": "postgresql://dodo:s3cret@db.example:5432/shop"})
    assert pg is None and line == "postgres: postgresql://dodo:***@db.example:5432/shop (DATABASE_URL)"
    with pytest.raises(ConfigError, match="unset DATABASE_URL or drop --data-dir"):
        start_postgres({"DATABASE_URL": "postgresql://dodo@db.example/shop"}, "var/pg")


def test_the_cli_passes_data_dir_to_serve(monkeypatch):
    import local_runner.server  # noqa: PLC0415
    from local_runner.__main__ import main as cli  # noqa: PLC0415

    calls = []
    monkeypatch.setattr(local_runner.server, "serve", lambda root, **kw: calls.append(kw))
    assert cli(["serve", "--data-dir", "var/pg"]) == 0
    assert calls == [{"data_dir": "var/pg"}]
