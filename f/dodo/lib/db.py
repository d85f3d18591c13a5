"""Connecting to Postgres from a Windmill `postgresql` resource or a DSN.

`connect` returns a psycopg 3 connection in autocommit mode whose `search_path` is the
bundle's schema (default "dodo"), after applying pending migrations once per process
for that server, database and schema, so a new deployment needs no manual step.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import tempfile
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from f.dodo.lib import schema as migrations
from f.dodo.lib.errors import ConfigError
from f.dodo.lib.resources import postgresql as PgResource  # Windmill's resource type

_migrated: set[tuple] = set()
_cert_files: dict[str, str] = {}


def dsn_to_resource(dsn: str) -> PgResource:
    """A `postgresql` resource dict from a DSN (postgresql://... or key=value)."""
    d = conninfo_to_dict(dsn)
    res: PgResource = {k: d[k] for k in ("host", "user", "password", "dbname", "sslmode") if d.get(k)}
    if d.get("port"):
        res["port"] = int(d["port"])
    if d.get("sslrootcert") and os.path.isfile(d["sslrootcert"]):
        with open(d["sslrootcert"]) as f:
            res["root_certificate_pem"] = f.read()
    return res


def resource_to_dsn(resource: PgResource | dict) -> str:
    """A libpq DSN from a `postgresql` resource; the root certificate goes to a 0600 temp file."""
    params = {k: resource[k] for k in ("host", "port", "user", "password", "dbname", "sslmode")
              if resource.get(k) not in (None, "")}
    pem = resource.get("root_certificate_pem")
    if pem:
        params["sslrootcert"] = _cert_file(pem)
    return make_conninfo("", **{k: str(v) for k, v in params.items()})


def _cert_file(pem: str) -> str:
    # libpq reads the CA from a file; one file per distinct certificate per process.
    key = hashlib.sha256(pem.encode()).hexdigest()
    path = _cert_files.get(key)
    if path is None or not os.path.exists(path):
        fd, path = tempfile.mkstemp(prefix="dodo-pg-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        _cert_files[key] = path
        atexit.register(_remove, path)
    return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def connect(target: PgResource | dict | str, schema: str = "dodo", *, migrate: bool = True,
            autocommit: bool = True, **kwargs) -> psycopg.Connection:
    """Connect to `target` (resource dict or DSN) with search_path = `schema`.

    Pending migrations are applied on the first connect per (host, port, dbname, schema)
    in this process unless `migrate=False`. Extra kwargs go to psycopg.connect.
    """
    migrations.check_schema(schema)
    dsn = target if isinstance(target, str) else resource_to_dsn(target)
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, options=f"-c search_path={schema},public", **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(target, exc) from None
    key = (conn.info.host, conn.info.port, conn.info.dbname, schema)
    if migrate and key not in _migrated:
        try:
            migrations.migrate(conn, schema)
        except BaseException:
            conn.close()
            raise
        _migrated.add(key)
    return conn


class DatabaseUnreachable(ConfigError, psycopg.OperationalError):
    """The database refused or did not answer the connection (still an OperationalError, so
    callers that retry on one keep doing so). The message names the setting, never the password."""

    def __init__(self, target: Any, exc: BaseException):
        where = conninfo_to_dict(target) if isinstance(target, str) else dict(target or {})
        setting = "DATABASE_URL" if isinstance(target, str) else "the postgresql resource f/dodo/postgres (locally: DATABASE_URL)"
        reason = " ".join(str(exc).split())[:240] or "no answer"
        ConfigError.__init__(self, setting,
                             f"cannot connect to {where.get('host')}:{where.get('port') or 5432}/"
                             f"{where.get('dbname') or ''} ({reason})",
                             "start the server or correct host, port, dbname, user and password there")

    def __reduce__(self):
        return (ConfigError, (self.setting, self.problem, self.fix))


def forget_migrated(schema: str | None = None) -> None:
    """Forget that `schema` (or every schema) was migrated: tests that drop one call this."""
    for key in [k for k in _migrated if schema is None or k[3] == schema]:
        _migrated.discard(key)
