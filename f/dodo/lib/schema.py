"""Numbered, append-only migrations, applied under an advisory lock.

Each migration is a module f/dodo/lib/migrations/vNNN_name.py holding `SQL` (SQL in
Python: a .sql file under f/ would be pushed as a Windmill Postgres script). Never edit
one that has shipped: add the next number and one line to MIGRATIONS
(f/dodo/lib/migration_list.py).

The SQL is written without a schema: it runs with `search_path` set to the target
schema, so one bundle can keep several schemas (e.g. a random one per test).
"""
from __future__ import annotations

import importlib
import re

from f.dodo.lib import db  # (db imports this module: use db.* at call time only)

from f.dodo.lib import migration_list
from f.dodo.lib.errors import SchemaBehind

MIGRATIONS = migration_list.MIGRATIONS  # the order, kept without the driver (the preprocessor reads it)

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema(schema: str) -> str:
    """A schema name is a lower-case identifier: no quoting surprises, safe in search_path."""
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        raise ValueError(f"schema must match {_SCHEMA.pattern}, got {schema!r}")
    return schema


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) for every migration, in order."""
    out = []
    for name in MIGRATIONS:
        module = importlib.import_module(f"f.dodo.lib.migrations.{name}")
        out.append((int(name[1:4]), name, module.SQL))
    return out


FIX = "run f/dodo/migrate with the owner role"


def latest() -> int:
    """The schema version this code needs: the last migration's number."""
    return migration_list.LATEST


def version(conn, schema: str = "dodo") -> int | None:
    """The schema's version (its highest applied migration), None if never migrated.
    One SELECT: the per-job check, which a DML-only role can run."""
    check_schema(schema)
    query = f"SELECT max(version) FROM {db.ident(schema)}.schema_migrations"
    try:
        if conn.autocommit:
            return conn.execute(query).fetchone()[0]
        with conn.transaction():  # a missing table must not abort the caller's transaction
            return conn.execute(query).fetchone()[0]
    except db.Error as exc:
        if getattr(exc, "pgcode", None) in _NO_SUCH_TABLE:
            return None
        raise


_NO_SUCH_TABLE = ("42P01", "3F000")  # SQLSTATE undefined_table, invalid_schema_name


def require_current(conn, schema: str = "dodo") -> int:
    """The schema's version; raises SchemaBehind, naming the fix, when it is older than the code."""
    found, needed = version(conn, schema), latest()
    if found is None:
        raise SchemaBehind(f"schema {schema} has no bundle tables (never migrated): {FIX}")
    if found < needed:
        raise SchemaBehind(f"schema {schema} is at version {found}, the code needs {needed}: {FIX}")
    return found


# DDL rights the bundle's role should not hold (README "Least privilege").
_EXCESS = """
    SELECT 'CREATE ON SCHEMA ' || nspname FROM pg_namespace
     WHERE nspname = %(s)s AND has_schema_privilege(oid, 'CREATE')
    UNION ALL
    SELECT 'OWNER OF ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(s)s AND pg_has_role(c.relowner, 'USAGE')
    ORDER BY 1"""


def status(conn, schema: str = "dodo") -> dict:
    """The schema's state for the connected role (doctor's privilege check):
    {"schema", "version" (None: never migrated), "latest", "behind", "missing"
    (`missing_privileges`, e.g. "INSERT on payments"), "excess" (DDL rights the bundle's
    role should not hold: CREATE on the schema, owned tables)}."""
    check_schema(schema)
    found = version(conn, schema)
    excess = [r for (r,) in conn.execute(_EXCESS, {"s": schema})]
    return {"schema": schema, "version": found, "latest": latest(), "behind": found is None or found < latest(),
            "missing": missing_privileges(conn, schema), "excess": excess}


def applied(conn, schema: str = "dodo") -> list[int]:
    """Versions already applied to `schema` (empty if it has never been migrated)."""
    check_schema(schema)
    if conn.execute("SELECT to_regclass(%s)", [f"{schema}.schema_migrations"]).fetchone()[0] is None:
        return []
    query = f"SELECT version FROM {db.ident(schema)}.schema_migrations ORDER BY version"
    return [v for (v,) in conn.execute(query)]


def migrate(conn, schema: str = "dodo") -> list[str]:
    """Apply pending migrations to `schema` in one transaction; returns their names.

    Safe when several processes run it at once: the transaction-level advisory lock
    lets one apply and the others then find nothing pending.
    """
    check_schema(schema)
    ident = db.ident(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"dodo.migrate:{schema}"])
        if conn.execute("SELECT to_regnamespace(%s)", [schema]).fetchone()[0] is None:
            # only when missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the
            # database, which the owner of an existing schema need not have
            conn.execute(f"CREATE SCHEMA {ident}")
        conn.execute(f"""CREATE TABLE IF NOT EXISTS {ident}.schema_migrations (
            version integer PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
        done = set(applied(conn, schema))
        conn.execute(f"SET LOCAL search_path TO {ident}")
        names = []
        for version, name, text in migrations():
            if version in done:
                continue
            conn.execute(text)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", [version, name])
            names.append(name)
    return names


# What the flows do to each table: the record step inserts and updates, reports read.
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")


def missing_privileges(conn, schema: str = "dodo") -> list[str]:
    """What the connected role may not do in `schema` that the bundle needs: USAGE on the
    schema, SELECT/INSERT/UPDATE on its tables, EXECUTE on its functions. Empty when all is
    granted (the doctor reports the rest, with the GRANT that fixes it)."""
    check_schema(schema)
    missing = [] if conn.execute("SELECT has_schema_privilege(%s, 'USAGE')", [schema]).fetchone()[0] \
        else [f"USAGE on schema {schema}"]
    for privilege in TABLE_PRIVILEGES:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT has_table_privilege(c.oid, %s) "
            "ORDER BY c.relname", [schema, privilege])
        missing += [f"{privilege} on {table}" for (table,) in rows]
    rows = conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND NOT has_function_privilege(p.oid, 'EXECUTE') ORDER BY 1", [schema])
    return missing + [f"EXECUTE on function {name}" for (name,) in rows]
