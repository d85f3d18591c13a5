"""local_runner.pg_server: each way of getting a server, as a fresh machine would."""
from __future__ import annotations

import os
import pwd
import shutil
import tempfile

import pytest

from f.dodo.lib import db as dblib

from local_runner import pg_server
from local_runner.pg_server import find_binaries, start_server


def _count(url: str) -> int:
    with dblib.connect(url, check=False) as c:
        c.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        c.execute("INSERT INTO kept VALUES (1)")
        return c.execute("SELECT count(*) FROM kept").fetchone()[0]


@pytest.mark.parametrize("provider", ["wheel", "system"])
def test_provider_starts_restarts_and_keeps_a_data_dir(provider, monkeypatch):
    try:
        find_binaries(provider)
    except RuntimeError:
        pytest.skip(f"no {provider} PostgreSQL on this machine")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@192.0.2.1:1/none")  # a forced provider ignores it
    parent = tempfile.mkdtemp(prefix="dodo-pg-test-", dir="/tmp")
    os.chmod(parent, 0o755)
    data = os.path.join(parent, "data")
    try:
        with start_server(data, provider=provider) as pg:
            assert pg.provider == provider and pg.managed
            assert _count(pg.url) == 1
            url = pg.url
            pg.restart()  # same port and data, connections dropped
            assert pg.url == url and _count(pg.url) == 2
        assert os.path.exists(os.path.join(data, "PG_VERSION"))  # a given data dir is kept
        with start_server(data, provider=provider) as pg:
            assert _count(pg.url) == 3
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must switch to an unprivileged account")
def test_wheel_as_root_without_a_postgres_account(monkeypatch):
    # A fresh machine: no Debian postgres user, only the wheel. `nobody` runs the server.
    monkeypatch.setenv("DODO_PG_USER", "nobody")
    monkeypatch.setenv("DODO_PG_PROVIDER", "wheel")
    with start_server() as pg:
        assert pg.provider == "wheel"
        with dblib.connect(pg.url, check=False) as c:
            version = c.execute("SHOW server_version_num").fetchone()[0]
            owner = os.stat(pg.data_dir).st_uid
        assert int(version) >= 150000
        assert owner == pwd.getpwnam("nobody").pw_uid
        data_dir = pg.data_dir
    assert not data_dir.exists()  # a throw-away server removes its data


def test_database_url_overrides(pg_url, monkeypatch):
    monkeypatch.delenv("DODO_PG_PROVIDER", raising=False)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    pg = start_server()
    assert pg.url == pg_url and pg.provider == "url" and not pg.managed
    with pytest.raises(RuntimeError):
        pg.restart()
    pg.stop()  # not ours: the server stays up
    with dblib.connect(pg_url, check=False) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_unknown_provider_is_rejected():
    with pytest.raises(ValueError):
        pg_server.find_binaries("docker")
