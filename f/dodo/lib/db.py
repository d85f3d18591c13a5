"""Connecting to Postgres from a Windmill `postgresql` resource or a DSN.

`connect` returns a `Connection` in autocommit mode whose `search_path` is the bundle's
schema (default "dodo"). The bundle runs with a role that has only DML rights (README,
"Least privilege"): it never migrates on the hot path. Once per process for each server,
database and schema it reads the schema's version (one cheap SELECT) and fails with
`SchemaBehind` naming the fix when the code needs a newer schema. Migrations are the
owner's explicit step (`f/dodo/migrate`, or `migrate=True` for local tools).

The driver is psycopg2 (psycopg2-binary), chosen by measurement: every Windmill job is a
fresh Python process and pays the driver's import each time. Importing psycopg2 costs
about 3 bare interpreter starts, psycopg 3 about 15, pg8000 about 10 (docs/internals.md,
"Database driver"). Nothing else in the bundle imports the driver: this module wraps it
with the little the bundle uses, in psycopg 3's shape (`conn.execute(...)` returns the
cursor, `conn.transaction()` is a block that commits or rolls back), plus `Json` for
json/jsonb parameters, `ident` for identifiers and the error classes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from collections.abc import Iterator  # not typing: see resources.py

import psycopg2
import psycopg2.extensions as _ext
from psycopg2._json import Json as _Json  # what psycopg2.extras.Json is, without extras' ~10 ms import

from f.dodo.lib import schema as migrations
from f.dodo.lib.errors import ConfigError
from f.dodo.lib.resources import postgresql as PgResource  # Windmill's resource type

# The driver's errors, for callers that handle one (never import the driver elsewhere).
Error = psycopg2.Error
OperationalError = psycopg2.OperationalError  # the server or the connection went away
InterfaceError = psycopg2.InterfaceError      # used a closed connection
DataError = psycopg2.DataError                # a value the column type rejects (e.g. beyond bigint)
IntegrityError = psycopg2.IntegrityError      # a constraint said no

# conn.info.transaction_status values
TX_IDLE = _ext.TRANSACTION_STATUS_IDLE
TX_INTRANS = _ext.TRANSACTION_STATUS_INTRANS
TX_INERROR = _ext.TRANSACTION_STATUS_INERROR

_ready: set[tuple] = set()  # (host, port, dbname, schema) checked or migrated in this process
_cert_files: dict[str, str] = {}


class Json(_Json):
    """A json/jsonb parameter: `Json(value)` or `Json(value, dumps=my_dumps)`."""


def ident(*names: str) -> str:
    """A (qualified) SQL identifier, quoted: ident("dodo", "webhook_events") -> "dodo"."webhook_events"."""
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


class Connection:
    """A psycopg2 connection with psycopg 3's calls the bundle uses."""

    def __init__(self, raw: "_ext.connection", dsn: str):
        self.raw = raw
        self.dsn = dsn  # what reconnect() needs (psycopg2 forgets it once the connection is lost)
        self._depth = 0  # transaction() nesting: the outer block is BEGIN/COMMIT, inner ones savepoints

    def execute(self, query: object, params: object = None, *, prepare: bool | None = None) -> "_ext.cursor":
        """Run one statement; returns its cursor (fetchone/fetchall/rowcount/iterate).
        `prepare` is accepted for psycopg 3 call sites and ignored."""
        cur = self.raw.cursor()
        cur.execute(query, params)
        return cur

    @contextmanager
    def transaction(self) -> Iterator["Connection"]:
        """A block in one transaction (a savepoint inside another): committed when it ends,
        rolled back when it raises. In autocommit mode, as psycopg 3 does."""
        top = self._depth == 0 and self.raw.autocommit
        name = f"dodo_sp_{self._depth}"
        self.execute("BEGIN" if top else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            if not self.raw.closed:
                self.execute("ROLLBACK" if top else f"ROLLBACK TO SAVEPOINT {name}")
            raise
        self._depth -= 1
        self.execute("COMMIT" if top else f"RELEASE SAVEPOINT {name}")

    @property
    def autocommit(self) -> bool:
        return self.raw.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self.raw.autocommit = value

    @property
    def info(self):
        """host, port, dbname, user, password, backend_pid, transaction_status, dsn_parameters."""
        return self.raw.info

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    @property
    def broken(self) -> bool:
        """Closed by a lost connection rather than by close()."""
        return self.raw.closed == 2

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # psycopg 3's semantics (psycopg2's own `with` only ends the transaction)
        try:
            if not self.raw.closed and not self.raw.autocommit:
                self.raw.rollback() if exc_type else self.raw.commit()
        finally:
            self.raw.close()


def dsn_to_resource(dsn: str) -> PgResource:
    """A `postgresql` resource dict from a DSN (postgresql://... or key=value)."""
    d = _ext.parse_dsn(dsn)
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
    return _ext.make_dsn("", **{k: str(v) for k, v in params.items()})


def _cert_file(pem: str) -> str:
    # libpq reads the CA from a file; one file per distinct certificate per process.
    import atexit, hashlib, tempfile  # noqa: E401, PLC0415 - only with a certificate: not paid by every job
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


def connect(target: PgResource | dict | str, schema: str = "dodo", *, migrate: bool = False,
            check: bool = True, autocommit: bool = True, **kwargs) -> Connection:
    """Connect to `target` (resource dict or DSN) with search_path = `schema`.

    Once per (host, port, dbname, schema) in this process: with `migrate=True` apply
    pending migrations (the owner role's step: tests, `make serve`, the demo), else,
    unless `check=False`, read the schema's version and raise `SchemaBehind` when it is
    older than the code's (no DDL, no lock: a DML-only role can run it). Extra kwargs
    are libpq parameters (connect_timeout, application_name, ...).
    """
    migrations.check_schema(schema)
    dsn = target if isinstance(target, str) else resource_to_dsn(target)
    dsn = _ext.make_dsn(dsn, options=f"-c search_path={schema},public", **kwargs)
    try:
        conn = Connection(psycopg2.connect(dsn), dsn)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnreachable(target, exc) from None
    conn.autocommit = autocommit
    key = (conn.info.host, conn.info.port, conn.info.dbname, schema)
    if (migrate or check) and key not in _ready:
        try:
            if migrate:
                migrations.migrate(conn, schema)
            else:
                migrations.require_current(conn, schema)
        except BaseException:
            conn.close()
            raise
        _ready.add(key)
    return conn


class DatabaseUnreachable(ConfigError, OperationalError):
    """The database refused or did not answer the connection (still an OperationalError, so
    callers that retry on one keep doing so). The message names the setting, never the password."""

    def __init__(self, target: object, exc: BaseException):
        where = _ext.parse_dsn(target) if isinstance(target, str) else dict(target or {})
        setting = "DATABASE_URL" if isinstance(target, str) else "the postgresql resource f/dodo/postgres (locally: DATABASE_URL)"
        reason = " ".join(str(exc).split())[:240] or "no answer"
        ConfigError.__init__(self, setting,
                             f"cannot connect to {where.get('host')}:{where.get('port') or 5432}/"
                             f"{where.get('dbname') or ''} ({reason})",
                             "start the server or correct host, port, dbname, user and password there")

    def __reduce__(self):
        return (ConfigError, (self.setting, self.problem, self.fix))


def reconnect(conn: Connection) -> Connection:
    """A new autocommit connection with the same parameters (search_path and password
    included) as `conn`, which may be lost already."""
    dsn = conn.dsn if "connect_timeout" in _ext.parse_dsn(conn.dsn) else _ext.make_dsn(conn.dsn, connect_timeout=5)
    fresh = Connection(psycopg2.connect(dsn), dsn)
    fresh.autocommit = True
    return fresh


def forget_migrated(schema: str | None = None) -> None:
    """Forget that `schema` (or every schema) was checked or migrated: tests that drop one call this."""
    for key in [k for k in _ready if schema is None or k[3] == schema]:
        _ready.discard(key)
