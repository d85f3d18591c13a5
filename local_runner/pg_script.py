"""PostgreSQL scripts (language `postgresql`, files `<name>.pg.sql`), run as Windmill's worker
runs them: in the worker itself (Rust, tokio-postgres), no Python process, still one job.

What is copied, from windmill-labs/windmill:

- backend/windmill-worker/src/pg_executor.rs@20db3a33, `do_postgresql`: the job's arguments
  are resolved like every job's (`build_args_values` -> common.rs `transform_json_as_values`:
  `$res:` / `$var:` strings become the resource / variable); the connection comes from the
  `database` argument (a postgresql resource), or from a `-- database <resource path>` line
  (`parse_db_resource`); no `database` at all fails with "Bad request: Missing database
  argument". The code is split into statements at each `;` outside quotes, comments and
  dollar quotes (`parse_sql_blocks`), each run on its own,
  outside any transaction (autocommit: a later statement's failure does not undo an earlier
  one), with the arguments its `$n` use (`do_postgresql_inner`: the used `$n` renumbered
  from `$1` in order), each argument converted by its declared type (`convert_val`) and
  checked against the type the server infers for that parameter (tokio-postgres `ToSql`:
  a JSON string for a `jsonb` parameter is refused, not parsed). An argument the job was not
  given takes its `-- $n name = default`, else NULL (pg_executor.rs on main; newer builds also
  send the parameter types with the query, `query_typed_raw`, which may coerce where the
  @20db3a33 check copied here refuses: the runner is the stricter of the two).
- windmill-common/src/worker.rs@ccbea0f8, `SqlAnnotations` / `SqlResultCollectionStrategy`:
  the leading `--` lines may carry `result_collection=<strategy>` (default
  last_statement_all_rows) and the legacy `return_last_result`; the result is shaped by
  `collect` (rows are objects column -> value; `*_scalar` takes each row's first column).
  The annotation parser is windmill-macros/src/lib.rs@c079155e `annotations`.
- parsers/windmill-parser-sql/src/lib.rs@8bd9c2ef, `parse_pgsql_sig` / `parse_pg_file`: the
  arguments are the `-- $n name [(type)] [= default]` lines and the `$n[::type]` uses
  (no cast: text), their types by `parse_pg_typ`. tests/test_pg_scripts.py checks this port
  against the same parser compiled to wasm (npm windmill-parser-wasm-regex `parse_sql`).
- Values back (`pg_cell_to_json_value`): json/jsonb as JSON, integers and floats as numbers,
  numeric as its text ("12.50", rust_decimal's serde form), timestamps as chrono prints
  them ("2026-01-02 03:04:05", timestamptz with " UTC"), bytea as "\\x<hex>", uuid/inet
  as text, void as null.
- A failure is a worker error, not a script exception: `error_to_value`
  (windmill-common worker.rs) gives `{"name": err.name(), "message": err.to_string()}`, no
  `step_id` and no `stack`. A Postgres error goes through `to_anyhow` into
  `Error::Anyhow` (windmill-common error.rs@a3b6fa4e): name "Anyhow", message
  "Error: db error: ERROR: <message>[\\nDETAIL: ..][\\nHINT: ..] @pg_executor.rs:<line>:<col>"
  (anyhow's `{:#}` renders tokio-postgres's kind, "db error", then its cause; the location is
  the `?` in pg_executor.rs, which varies with the Windmill build: here `PG_LOCATION`).

Not copied: `%%name%%` interpolation, `-- s3` streaming, `-- prepare`, data tables
(`datatable://`), and the worker's cached connection (one per worker, the most used target,
kept 60 s after its last query; its session state survives between jobs): every job here
opens and closes its own connection.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

LANGUAGE = "postgresql"
EXTENSION = ".pg.sql"
# The `?` site the message names (pg_executor.rs@20db3a33, do_postgresql_inner: query_raw /
# try_collect). A real worker prints that line and column of its own build.
PG_LOCATION = "pg_executor.rs"


class SqlJobFailed(Exception):
    """A postgresql job's error result ({name, message}), as the worker records it."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.error = {"name": name, "message": message}


def _execution_err(message: str) -> SqlJobFailed:
    return SqlJobFailed("ExecutionErr", message)  # Error::ExecutionErr: the message as is


def _anyhow(message: str) -> SqlJobFailed:
    return SqlJobFailed("Anyhow", f"Error: {message} @{PG_LOCATION}")


# ---------------------------------------------------------------- the signature (windmill-parser-sql)

_RE_ARG_PGSQL = re.compile(r"^-- \$(\d+) (\w+)(?: \(([A-Za-z0-9_\[\]]+)\))?(?: ?= ?(.+?))? *(?:\r|\n|$)", re.M)
_RE_CODE_PGSQL = re.compile(r"\$(\d+)(?:::(\w+(?:\[\])?))?")
_RE_DB = re.compile(r"^-- database (\S+) *(?:\r|\n|$)", re.M)
_RE_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_RE_NONEMPTY_BLOCK = re.compile(r"^\s*[^\s](?:[^-]|$)", re.M)
_TYPES_WITH_SPACES = (("character varying", "varchar"), ("double precision", "double"),
                      ("time with time zone", "timetz"), ("time without time zone", "time"),
                      ("timestamp with time zone", "timestamptz"), ("timestamp without time zone", "timestamp"))


@dataclass
class Arg:
    name: str
    otyp: str      # the Postgres type as written (lower case), e.g. "jsonb", "bigint[]"
    typ: Any       # windmill_parser::Typ as the wasm parser prints it: "int", {"str": None}, ...
    oidx: int
    has_default: bool = False
    default: Any = None


def parse_pg_typ(otyp: str) -> Any:
    """windmill-parser-sql `parse_pg_typ`, in the wasm parser's JSON form."""
    if otyp.endswith("[]"):
        return {"list": parse_pg_typ(otyp[:-2])}
    if otyp in ("int", "integer", "int4", "bigint", "smallint", "int2", "smallserial", "serial2", "serial",
                "serial4", "bigserial", "serial8", "oid"):
        return "int"
    if otyp in ("bool", "boolean"):
        return "bool"
    if otyp in ("json", "jsonb"):
        return {"object": {"name": None, "props": []}}
    if otyp in ("real", "float4", "double", "double precision", "float8", "numeric", "decimal"):
        return "float"
    if otyp in ("date", "time", "timetz", "time with time zone", "time without time zone", "timestamp",
                "timestamptz", "timestamp with time zone", "timestamp without time zone"):
        return "datetime"
    if otyp == "bytea":
        return "bytes"
    return {"str": None}


def _spaced_type(code: str, start: int, written: str) -> str:
    """transform_types_with_spaces: `$1::double precision` is "double", not "double"."""
    rest = code[start:]
    for long_type, alias in _TYPES_WITH_SPACES:
        text, ok = rest, True
        for token in long_type.split(" "):
            if text[:len(token)].lower() != token:
                ok = False
                break
            text = text[len(token):].lstrip()
        if ok:
            return alias
    return written


def _parsed_default(typ: Any, text: str | None) -> Any:
    """parsed_default: "null" -> none; int / float / bool parsed; a quoted string unquoted."""
    if text is None or text.lower() == "null":
        return None
    try:
        if typ == "int":
            return int(text)
        if typ == "float":
            return float(text)
    except ValueError:
        return None
    if typ == "bool":
        return {"true": True, "false": False}.get(text)
    if isinstance(typ, dict) and "str" in typ and len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    return text


def parse_signature(code: str) -> list[Arg]:
    """parse_pg_file, as the parser shipped in windmill-parser-wasm-regex 1.764.0 behaves
    (checked by tests/test_pg_scripts.py; newer than lib.rs@8bd9c2ef): a `-- $n name (type)`
    line declares an argument with that type; every other argument is typed by its first
    `$n::type` use in the code outside comments, quotes and dollar quotes (no cast at all:
    text) and named by its `-- $n name` line, else "$n"; a `-- $n name` line whose `$n` is not
    used declares nothing. `= default` is parsed by the argument's type. Sorted by index."""
    args: dict[int, Arg] = {}
    for m in _RE_ARG_PGSQL.finditer(code):
        if m.group(3):
            idx, otyp = int(m.group(1)), m.group(3).lower()
            typ = parse_pg_typ(otyp)
            args[idx] = Arg(m.group(2), otyp, typ, idx, m.group(4) is not None, _parsed_default(typ, m.group(4)))
    inferred: dict[int, str | None] = {}
    for idx, cast in _uses(code):
        if idx not in args and inferred.get(idx) is None:
            inferred[idx] = cast
    for idx, otyp in inferred.items():
        otyp = (otyp or "text").lower()
        args[idx] = Arg(f"${idx}", otyp, parse_pg_typ(otyp), idx)
    for m in _RE_ARG_PGSQL.finditer(code):
        idx = int(m.group(1))
        if idx in inferred:
            arg = args[idx]
            arg.name, arg.has_default = m.group(2), m.group(4) is not None
            arg.default = _parsed_default(arg.typ, m.group(4))
    return [args[i] for i in sorted(args)]


def _uses(code: str) -> list[tuple[int, str | None]]:
    """Each `$n` outside comments and quotes, with its `::type` cast (None without)."""
    found: list[tuple[int, str | None]] = []

    def on_char(i: int) -> int:
        if code[i] == "$" and i + 1 < len(code) and code[i + 1].isdigit():
            j = i + 1
            while j < len(code) and code[j].isdigit():
                j += 1
            m = _RE_CODE_PGSQL.match(code, i)
            cast = _spaced_type(code, m.start(2), m.group(2)) if m and m.group(2) else None
            found.append((int(code[i + 1:j]), cast))
            return j - 1
        return i
    _scan(code, on_char)
    return found


def schema_args(code: str) -> list[dict]:
    """The script's inputs as `wmill script generate-metadata` infers them (windmill-cli:
    `database` (resource postgresql) first, then parse_sql's), in the form tools/lint.py
    compares with a .script.yaml schema."""
    return ([{"name": "database", "typ": {"resource": "postgresql"}, "has_default": False}]
            + [{"name": a.name, "typ": a.typ, "has_default": a.has_default} for a in parse_signature(code)])


def _scan(code: str, on_char) -> None:
    """run_on_sql_statement_matches: walk the code outside quotes, comments and dollar-quoted
    bodies (`$$ ... $$`, `$tag$ ... $tag$`), calling on_char(i) on every other character."""
    state, i, n, tag = "normal", 0, len(code), ""
    while i < n:
        c = code[i]
        nxt = code[i + 1] if i + 1 < n else ""
        if state == "dollar":
            if code.startswith(tag, i):
                state, i = "normal", i + len(tag)
                continue
        elif state == "normal":
            m = _RE_DOLLAR_TAG.match(code, i) if c == "$" else None
            if m:
                state, tag = "dollar", m.group(0)
                i += len(tag)
                continue
            if c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "-" and nxt == "-":
                state = "line"
            elif c == "/" and nxt == "*":
                state = "block"
            else:
                i = on_char(i)
        elif state == "single" and c == "'":
            if nxt == "'":
                i += 1
            else:
                state = "normal"
        elif state == "double" and c == '"':
            if nxt == '"':
                i += 1
            else:
                state = "normal"
        elif state == "line" and c == "\n":
            state = "normal"
        elif state == "block" and c == "*" and nxt == "/":
            state = "normal"
        i += 1


def split_statements(code: str) -> list[str]:
    """parse_sql_blocks: split after each `;` outside quotes and comments; a trailing block is
    kept when it holds more than blanks and comment-looking text."""
    blocks: list[str] = []
    last = [0]

    def on_char(i: int) -> int:
        if code[i] == ";":
            blocks.append(code[last[0]:i + 1])
            last[0] = i + 1
        return i
    _scan(code, on_char)
    tail = code[last[0]:]
    if tail and _RE_NONEMPTY_BLOCK.search(tail):
        blocks.append(tail)
    return blocks


def statement_arg_indices(statement: str) -> set[int]:
    """parse_pg_statement_arg_indices: the `$n` a statement uses, outside quotes and comments."""
    return {idx for idx, _ in _uses(statement)}


def annotations(code: str) -> tuple[str, bool]:
    """SqlAnnotations::parse: (result_collection, return_last_result) from the leading lines
    that start with `--` (no leading blank), `key=value` split at the first `=`."""
    collection, last_result = "last_statement_all_rows", False
    for line in code.splitlines():
        if not line.startswith("--"):
            break
        key, _, value = line[2:].strip().partition("=")
        if key == "result_collection" and value:
            collection = value if value in STRATEGIES else "last_statement_all_rows"
        elif key == "return_last_result":
            last_result = True
    return ("last_statement_all_rows" if last_result else collection), last_result


def inline_database(code: str) -> str | None:
    m = _RE_DB.search(code)
    return m.group(1) if m else None


# ---------------------------------------------------------------- result collection (worker.rs)

STRATEGIES = ("last_statement_all_rows", "last_statement_first_row", "last_statement_all_rows_scalar",
              "last_statement_first_row_scalar", "all_statements_all_rows", "all_statements_first_row",
              "all_statements_all_rows_scalar", "all_statements_first_row_scalar", "legacy")


def _last_only(strategy: str, count: int) -> bool:
    return strategy.startswith("last_statement") or (strategy == "legacy" and count == 1)


def _first_row(strategy: str) -> bool:
    return "first_row" in strategy


def _scalar(strategy: str) -> bool:
    return strategy.endswith("_scalar")


def collect(strategy: str, statements: list[list[dict]]) -> Any:
    """SqlResultCollectionStrategy::collect."""
    values = statements[-1:] if _last_only(strategy, len(statements)) else statements
    if _first_row(strategy):
        values = [rows[:1] for rows in values]
    if _scalar(strategy):
        values = [[_first_value(row) for row in rows] for rows in values]
    last, first = _last_only(strategy, len(values)), _first_row(strategy)
    if last and first:
        return values[-1][0] if values and values[-1] else None
    if last:
        return values[-1] if values else None
    if first:
        return [rows[0] if rows else None for rows in values]
    return values


def _first_value(row: dict) -> Any:
    if not row:
        raise _execution_err("Could not collect sql scalar value from empty row")
    return next(iter(row.values()))


# ---------------------------------------------------------------- arguments (convert_val)

_INTS = {"char": "i8", "character": "i8", "smallint": "i16", "smallserial": "i16", "int2": "i16", "serial2": "i16",
         "int": "i32", "integer": "i32", "int4": "i32", "serial": "i32", "oid": "u32",
         "bigint": "i64", "bigserial": "i64", "int8": "i64", "serial8": "i64"}
_FLOATS = {"real": "f32", "float4": "f32", "double": "f64", "float8": "f64", "numeric": "Decimal",
           "decimal": "Decimal"}
_NULLS = {**_INTS, **_FLOATS, "bool": "bool", "boolean": "bool", "uuid": "Uuid", "date": "NaiveDate",
          "time": "NaiveTime", "timetz": "NaiveTime", "timestamp": "NaiveDateTime", "timestamptz": "DateTime<Utc>",
          "jsonb": "Option<Value>", "json": "Option<Value>", "bytea": "Vec<u8>", "text": "String",
          "varchar": "String"}
# The Postgres types each Rust type's ToSql accepts (postgres-types, rust_decimal, uuid, chrono).
_ACCEPTS = {"bool": {"bool"}, "i8": {"char"}, "i16": {"int2"}, "i32": {"int4"}, "i64": {"int8"}, "u32": {"oid"},
            "f32": {"float4"}, "f64": {"float8"}, "Decimal": {"numeric"}, "Uuid": {"uuid"}, "NaiveDate": {"date"},
            "NaiveTime": {"time"}, "NaiveDateTime": {"timestamp"}, "DateTime<Utc>": {"timestamptz"},
            "Vec<u8>": {"bytea"}, "Value": {"json", "jsonb"}, "Option<Value>": {"json", "jsonb"},
            "String": {"varchar", "text", "bpchar", "name", "unknown", "citext", "ltree", "lquery", "ltxtquery"}}
_RUST_NAMES = {"String": "alloc::string::String", "Value": "serde_json::value::Value",
               "Option<Value>": "core::option::Option<serde_json::value::Value>",
               "Decimal": "rust_decimal::decimal::Decimal", "Uuid": "uuid::Uuid", "Vec<u8>": "alloc::vec::Vec<u8>",
               "NaiveDate": "chrono::naive::date::NaiveDate", "NaiveTime": "chrono::naive::time::NaiveTime",
               "NaiveDateTime": "chrono::naive::datetime::NaiveDateTime",
               "DateTime<Utc>": "chrono::datetime::DateTime<chrono::offset::utc::Utc>"}


@dataclass
class Param:
    rust: str            # the Rust type convert_val boxes (what ToSql accepts is checked on it)
    value: Any           # the Python value sent
    array: bool = False  # Option<Vec<Option<T>>>
    null: bool = False   # None::<T>


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _chrono(fmt_value: str, kind: str):
    """chrono's parse of "%Y-%m-%dT%H:%M:%S.%3fZ" (date/time/timestamp) or RFC 3339 (timestamptz),
    `unwrap_or_default` on failure: 1970-01-01 / 00:00:00."""
    try:
        if kind == "DateTime<Utc>":
            return dt.datetime.fromisoformat(fmt_value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
        parsed = dt.datetime.strptime(fmt_value, "%Y-%m-%dT%H:%M:%S.%fZ")
        if len(fmt_value.rsplit(".", 1)[-1]) != 4:  # %3f: exactly three digits, then Z
            raise ValueError
    except ValueError:
        parsed = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc if kind == "DateTime<Utc>" else None)
    return {"NaiveDate": parsed.date(), "NaiveTime": parsed.time()}.get(kind, parsed)


def convert_value(value: Any, arg: Arg) -> Param:
    """pg_executor.rs convert_val / convert_vec_val."""
    otyp = arg.otyp
    if otyp.endswith("[]") and (isinstance(value, list) or value is None):
        return _convert_array(value, otyp[:-2])
    if value is None:
        if otyp not in _NULLS:
            raise SqlJobFailed("Anyhow", f"Error: Unsupported JSON null type @{PG_LOCATION}")
        return Param(_NULLS[otyp], None, null=True)
    if isinstance(value, bool):
        return Param("bool", value)
    if isinstance(value, (int, float)):
        if isinstance(arg.typ, dict) and "str" in arg.typ:
            return Param("String", json.dumps(value))  # serde_json's Number to_string
        rust = _INTS.get(otyp) if _is_int(value) else None
        if rust in ("i8", "i16", "i32") or (rust in ("i64", "u32") and value >= 0):
            return Param(rust, value)
        if otyp in _FLOATS and _FLOATS[otyp] in ("f32", "f64"):
            return Param(_FLOATS[otyp], float(value))
        if otyp in ("numeric", "decimal"):
            return Param("Decimal", decimal.Decimal(str(value)))
        return Param("i64", value) if _is_int(value) else Param("f64", float(value))
    if isinstance(value, str):
        if otyp == "uuid":
            try:
                return Param("Uuid", uuid.UUID(value))
            except ValueError as e:
                raise SqlJobFailed("UuidErr", f"UuidErr: {e} @{PG_LOCATION}") from None
        if otyp in ("date", "time", "timetz", "timestamp", "timestamptz"):
            kind = _NULLS[otyp]
            return Param(kind, _chrono(value, kind))
        if otyp == "bytea":
            try:
                return Param("Vec<u8>", base64.b64decode(value, validate=True))
            except ValueError:
                return Param("Vec<u8>", b"")
        return Param("String", value)
    if isinstance(value, list):
        if otyp in ("jsonb", "json"):
            return Param("Value", value)
        raise _execution_err(f"Unsupported type in query: {_debug_value(value)} and signature {json.dumps(otyp)}")
    if isinstance(value, dict):
        if otyp in ("text", "varchar"):
            return Param("String", json.dumps(value, separators=(",", ":")))
        return Param("Value", value)
    raise _execution_err(f"Unsupported type in query: {value!r} and signature {json.dumps(otyp)}")


def _convert_array(values: list | None, base: str) -> Param:
    rust = {**_INTS, **_FLOATS, "bool": "bool", "boolean": "bool", "uuid": "Uuid", "date": "NaiveDate",
            "time": "NaiveTime", "timetz": "NaiveTime", "timestamp": "NaiveDateTime",
            "timestamptz": "DateTime<Utc>", "jsonb": "Value", "json": "Value", "bytea": "Vec<u8>",
            "text": "String", "varchar": "String"}.get(base)
    if rust is None:
        raise SqlJobFailed("Anyhow", f"Error: Unsupported JSON array type @{PG_LOCATION}")
    if values is None:
        return Param(rust, None, array=True, null=True)
    out = []
    for v in values:
        if v is None or rust == "Value":
            out.append(v)
            continue
        ok = {"bool": isinstance(v, bool), "String": isinstance(v, str)}.get(
            rust, _is_int(v) if rust in ("i8", "i16", "i32", "i64", "u32") else isinstance(v, (int, float, str)))
        if not ok:
            raise SqlJobFailed("Anyhow", f"Error: Mixed types in array @{PG_LOCATION}")
        out.append(v)
    return Param(rust, out, array=True)


def _debug_value(value: Any) -> str:
    return json.dumps(value)


# ---------------------------------------------------------------- running a job


def run(code: str, args: dict, resource_for_path) -> Any:
    """One postgresql job: `args` already resolved (transform_json), `resource_for_path(path)`
    answers a `-- database <path>` line. Returns the job's result or raises SqlJobFailed."""
    strategy, _ = annotations(code)
    db_path = inline_database(code)
    database = resource_for_path(db_path) if db_path else args.get("database")
    if database is None:
        raise SqlJobFailed("BadRequest", "Bad request: Missing database argument")
    if not isinstance(database, dict) or not database.get("host") or not database.get("dbname"):
        field = "host" if not isinstance(database, dict) or not database.get("host") else "dbname"
        raise _execution_err(f"missing field `{field}`")
    sig = {a.oidx: a for a in parse_signature(code)}
    statements = split_statements(code)
    conn = _connect(database)
    try:
        results = []
        for i, statement in enumerate(statements):
            skip = _last_only(strategy, len(statements)) and i < len(statements) - 1
            results.append(_run_statement(conn, statement, sig, args, skip, _first_row(strategy)))
        return collect(strategy, results)
    finally:
        conn.close()


def _connect(database: dict):
    import psycopg2  # noqa: PLC0415 - the runner's driver, as f/dodo/lib/db.py's
    from f.dodo.lib.db import resource_to_dsn  # noqa: PLC0415 - one way to make a DSN from a resource

    resource = {"user": "postgres", "port": 5432, "sslmode": "prefer", **{k: v for k, v in database.items()
                                                                          if v not in (None, "")}}
    try:
        conn = psycopg2.connect(resource_to_dsn(resource))
    except psycopg2.OperationalError as e:
        raise SqlJobFailed("Anyhow", f"Error: error connecting to server: {' '.join(str(e).split())} "
                                     f"@{PG_LOCATION}") from None
    conn.autocommit = True  # each statement its own implicit transaction, as tokio-postgres runs them
    return conn


def _run_statement(conn, statement: str, sig: dict, args: dict, skip: bool, first_only: bool) -> list[dict]:
    import psycopg2  # noqa: PLC0415

    used = [i for i in sorted(statement_arg_indices(statement)) if i in sig]
    statement = _renumber(statement, {oidx: n for n, oidx in enumerate(used, 1)})
    params = [convert_value(_value(args, sig[oidx]), sig[oidx]) for oidx in used]
    cur = conn.cursor()
    try:
        if params:
            _execute_prepared(cur, statement, params)
        else:
            cur.execute(statement)
        if skip or cur.description is None:
            return []
        rows = cur.fetchmany(1) if first_only else cur.fetchall()
        names = [d.name for d in cur.description]
        types = [d.type_code for d in cur.description]
        return [{name: cell_to_json(value, oid, name) for name, value, oid in zip(names, row, types)}
                for row in rows]
    except psycopg2.Error as e:
        raise _db_error(e) from None
    finally:
        cur.close()


def _renumber(statement: str, mapping: dict[int, int]) -> str:
    """$5, $50 -> $1, $2 at the uses' positions only (do_postgresql_inner on main; @20db3a33
    used a plain text replace, which also hit `$50` when renumbering `$5`)."""
    out, last = [], [0]

    def on_char(i: int) -> int:
        if statement[i] == "$" and i + 1 < len(statement) and statement[i + 1].isdigit():
            j = i + 1
            while j < len(statement) and statement[j].isdigit():
                j += 1
            new = mapping.get(int(statement[i + 1:j]))
            out.append(statement[last[0]:i + 1] + (str(new) if new else statement[i + 1:j]))
            last[0] = j
            return j - 1
        return i
    _scan(statement, on_char)
    return "".join(out) + statement[last[0]:]


def _value(args: dict, arg: Arg) -> Any:
    """The value bound: the job's argument, else the declaration's default, else NULL
    (pg_executor.rs on main, do_postgresql_inner: "explicit user value > declaration default
    > NULL"; @20db3a33 bound NULL without looking at the default)."""
    if arg.name in args:
        return args[arg.name]
    return arg.default


def _execute_prepared(cur, statement: str, params: list[Param]) -> None:
    """The extended protocol's Parse/Bind through SQL: PREPARE gives the parameter types the
    server infers (what tokio-postgres checks each ToSql against), EXECUTE binds the values."""
    name = f"wm_pg_{uuid.uuid4().hex[:12]}"
    cur.execute(f"PREPARE {name} AS {statement}")
    try:
        cur.execute("SELECT format_type(t.oid, NULL), t.typname, n.nspname FROM pg_prepared_statements s "
                    "CROSS JOIN LATERAL unnest(s.parameter_types) WITH ORDINALITY AS p(typ, i) "
                    "JOIN pg_type t ON t.oid = p.typ::oid JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE s.name = %s ORDER BY p.i", (name,))
        types = cur.fetchall()
        if len(types) != len(params):
            raise _anyhow(f"expected {len(types)} parameters but got {len(params)}")
        for i, (param, (_, typname, schema)) in enumerate(zip(params, types)):
            _check_accepts(i, param, typname, schema)
        placeholders = ", ".join(f"%s::{fmt}" for fmt, _, _ in types)
        cur.execute(f"EXECUTE {name}({placeholders})", [_sql_value(p) for p in params])
    finally:
        cur.connection.cursor().execute(f"DEALLOCATE {name}")


def _check_accepts(index: int, param: Param, typname: str, schema: str) -> None:
    accepted = _ACCEPTS[param.rust]
    ok = (typname.startswith("_") and typname[1:] in accepted) if param.array else typname in accepted
    if ok:
        return
    rust = _RUST_NAMES.get(param.rust, param.rust)
    if param.array:
        rust = f"core::option::Option<alloc::vec::Vec<core::option::Option<{rust}>>>"
    elif param.null:
        rust = f"core::option::Option<{rust}>"
    shown = typname if schema in ("public", "pg_catalog") else f"{schema}.{typname}"
    raise _anyhow(f"error serializing parameter {index}: cannot convert between the Rust type `{rust}` "
                  f"and the Postgres type `{shown}`")


def _sql_value(p: Param) -> Any:
    from f.dodo.lib.db import Json  # noqa: PLC0415 - the driver's json adapter, as the bundle uses it

    if p.value is None:
        return None
    if p.rust in ("Value", "Option<Value>"):
        return [Json(v) if v is not None else None for v in p.value] if p.array else Json(p.value)
    return p.value


def _db_error(e) -> SqlJobFailed:
    """tokio-postgres Error { kind: Db } with its DbError as cause, through anyhow's `{:#}`."""
    diag = e.diag
    if diag.message_primary is None:  # the connection broke, not the server saying no
        return _anyhow(f"connection closed: {' '.join(str(e).split())}")
    text = f"db error: {diag.severity or 'ERROR'}: {diag.message_primary}"
    if diag.message_detail:
        text += f"\nDETAIL: {diag.message_detail}"
    if diag.message_hint:
        text += f"\nHINT: {diag.message_hint}"
    return _anyhow(text)


# ---------------------------------------------------------------- values back (pg_cell_to_json_value)

_TEXT = {25, 1043, 1042, 19, 705}   # text, varchar, bpchar, name, unknown: String's FromSql
_INT = {21, 23, 20, 26}             # int2, int4, int8, oid
_JSON = {114, 3802}
_ARRAYS = {1000: 16, 1005: 21, 1007: 23, 1016: 20, 1009: 25, 1015: 1043, 199: 114, 3807: 3802, 1021: 700,
           1022: 701, 1231: 1700, 1115: 1114, 1182: 1082, 1183: 1083, 1185: 1184, 1001: 17, 3643: 3614}


def _chrono_time(t: dt.time) -> str:
    base = t.strftime("%H:%M:%S")
    us = t.microsecond
    if not us:
        return base
    return base + (f".{us // 1000:03d}" if us % 1000 == 0 else f".{us:06d}")


def cell_to_json(value: Any, oid: int, column: str) -> Any:
    if value is None:
        return None
    if oid in _ARRAYS:
        return [cell_to_json(v, _ARRAYS[oid], column) for v in value]
    if oid == 16 or oid in _INT or oid in _JSON:
        return value
    if oid in (700, 701):
        if value != value or value in (float("inf"), float("-inf")):
            raise SqlJobFailed("Anyhow", f"Error: invalid json-float @{PG_LOCATION}")
        return value
    if oid == 1700:
        return str(value)  # rust_decimal serialises as a string
    if oid in _TEXT or oid == 3614:
        return value
    if oid == 1114:
        return f"{value.date().isoformat()} {_chrono_time(value.time())}"
    if oid == 1184:
        utc = value.astimezone(dt.timezone.utc)
        return f"{utc.date().isoformat()} {_chrono_time(utc.time())} UTC"
    if oid == 1082:
        return value.isoformat()
    if oid == 1083:
        return _chrono_time(value)
    if oid in (2950, 869):
        return str(ipaddress.ip_interface(value).ip) if oid == 869 else str(value)
    if oid == 17:
        return "\\x" + bytes(value).hex()
    if oid == 2278:
        return None
    if isinstance(value, str):
        return value
    raise SqlJobFailed("Anyhow", f"Error: conversion issue for value at column_name `{column}` with type "
                                 f"oid {oid} @{PG_LOCATION}")
