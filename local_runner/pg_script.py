"""PostgreSQL scripts (language `postgresql`, files `<name>.pg.sql`), run as Windmill's worker
runs them: in the worker itself (Rust, tokio-postgres), no Python process, still one job.

Copied from windmill-labs/windmill backend/windmill-worker/src/pg_executor.rs as on main after
PRs #8999 (typed binding, declaration defaults) and #9106 (the rust-postgres fork; the 1.7xx+
line the bundle's windmill-cli 1.819.0 belongs to); @20db3a33 is the older shape where noted.

- `do_postgresql`: the job's arguments are resolved like every job's (`build_args_values` ->
  common.rs `transform_json_as_values`: `$res:` / `$var:` strings become the resource /
  variable). The connection comes from the `database` argument (a postgresql resource), or a
  `-- database <resource path>` line (`parse_db_resource`); neither: "Bad request: Missing
  database argument". The code is split at each `;` outside quotes, comments and dollar
  quotes (`parse_sql_blocks`); each statement runs on its own, outside any transaction (a later
  statement's failure does not undo an earlier one).
- `do_postgresql_inner`: a statement binds the `$n` it uses, renumbered from `$1`. Each value is
  the job's argument of that name, else the `-- $n name = default`, else NULL; `convert_val`
  pairs it with its natural Postgres type (a string is parsed into a declared int / numeric /
  bool / date type, else sent as text: `$1::jsonb` parses a JSON string on the server). When
  every used argument's type is one Windmill can name (`otyp_to_pg_type`) the statement goes
  with those types asserted (`query_typed_raw`); otherwise (an enum, a domain, a type from
  another schema) the server infers the types and each binding must accept them
  (tokio-postgres `ToSql::accepts`).
- windmill-common/src/worker.rs@ccbea0f8 `SqlAnnotations` / `SqlResultCollectionStrategy`: the
  leading `--` lines may carry `result_collection=<strategy>` (default last_statement_all_rows)
  and the legacy `return_last_result` (windmill-macros/src/lib.rs@c079155e `annotations`); the
  result is shaped by `collect` (rows are objects column -> value; `*_scalar` takes each row's
  first column; a `first_row` of no row is null).
- parsers/windmill-parser-sql `parse_pgsql_sig`: as npm windmill-parser-wasm-regex 1.764.0
  `parse_sql` (the parser `wmill` uses) behaves, which tests/test_pg_scripts.py checks.
- `pg_cell_to_json_value_with_state`: see `cell_to_json`.
- A failure is a worker error, not a script exception: windmill-common worker.rs
  `error_to_value` gives `{"name": err.name(), "message": err.to_string()}`, no `step_id`, no
  `stack`. A Postgres error goes through `to_anyhow` into `Error::Anyhow` (error.rs@a3b6fa4e):
  name "Anyhow", message "Error: db error: ERROR: <message>[\\nDETAIL: ..][\\nHINT: ..]
  @pg_executor.rs:<line>:<col>" (anyhow's `{:#}` renders the fork's kind, "db error", then its
  cause; PR #10371). The `@file:line:col` is where the worker's `?` sits in its own build: here
  `PG_LOCATION`, without line and column, so match on the text before it.

- `CONNECTION_CACHE`: see `ConnectionCache` (one cached connection, reset between jobs).

Not copied: `%%name%%` interpolation, `-- s3` modes, `-- prepare`, data tables, IAM auth.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import re
import threading
import time
import uuid
from contextlib import contextmanager
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
    inferred: bool = False  # otyp_inferred: "text" only because nothing typed it


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
        args[idx] = Arg(f"${idx}", (otyp or "text").lower(), parse_pg_typ((otyp or "text").lower()), idx,
                        inferred=otyp is None)
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

# otyp_to_pg_type: the declared types the worker can name to the server. When every argument a
# statement uses has one, the statement goes as one unnamed prepared statement with the
# parameter types asserted (query_typed_raw), each the natural type of its binding; otherwise
# the server infers the parameter types (prepare + query_raw) and each binding's ToSql must
# accept what it inferred.
_KNOWN_OTYPS = {"bool", "boolean", "char", "character", "smallint", "smallserial", "int2", "serial2", "int", "integer",
                "int4", "serial", "bigint", "bigserial", "int8", "serial8", "real", "float4", "double",
                "double precision", "float8", "numeric", "decimal", "text", "varchar", "character varying", "uuid",
                "date", "time", "timetz", "timestamp", "timestamptz", "json", "jsonb", "bytea", "oid"}
_INT_TYPES = {"char": ("i8", '"char"'), "character": ("i8", '"char"'),
              **{t: ("i16", "int2") for t in ("smallint", "smallserial", "int2", "serial2")},
              **{t: ("i32", "int4") for t in ("int", "integer", "int4", "serial")},
              **{t: ("i64", "int8") for t in ("bigint", "bigserial", "int8", "serial8")}}
_RANGES = {"i16": (-2 ** 15, 2 ** 15 - 1), "i32": (-2 ** 31, 2 ** 31 - 1), "i64": (-2 ** 63, 2 ** 63 - 1),
           "u32": (0, 2 ** 32 - 1)}
# The null binding and natural type of each declared type (convert_val's Value::Null arm).
_NULL_TYPES = {"bool": ("bool", "bool"), "boolean": ("bool", "bool"), **_INT_TYPES,
               "numeric": ("Decimal", "numeric"), "decimal": ("Decimal", "numeric"), "oid": ("u32", "oid"),
               "real": ("f32", "float4"), "float4": ("f32", "float4"), "double": ("f64", "float8"),
               "double precision": ("f64", "float8"), "float8": ("f64", "float8"), "uuid": ("Uuid", "uuid"),
               "date": ("NaiveDate", "date"), "time": ("NaiveTime", "time"), "timetz": ("NaiveTime", "time"),
               "timestamp": ("NaiveDateTime", "timestamp"), "timestamptz": ("DateTime<Utc>", "timestamptz"),
               "jsonb": ("Value", "jsonb"), "json": ("Value", "json"), "bytea": ("Vec<u8>", "bytea"),
               "varchar": ("String", "varchar"), "character varying": ("String", "varchar"),
               "text": ("String", "text")}
# The Postgres types each binding's ToSql accepts (postgres-types, rust_decimal, uuid, chrono;
# AnyTextValue: text-like types plus any enum or domain).
_ACCEPTS = {"bool": {"bool"}, "i8": {"char"}, "i16": {"int2"}, "i32": {"int4"}, "i64": {"int8"}, "u32": {"oid"},
            "f32": {"float4"}, "f64": {"float8"}, "Decimal": {"numeric"}, "Uuid": {"uuid"}, "NaiveDate": {"date"},
            "NaiveTime": {"time"}, "NaiveDateTime": {"timestamp"}, "DateTime<Utc>": {"timestamptz"},
            "Vec<u8>": {"bytea"}, "Value": {"json", "jsonb"},
            "String": {"varchar", "text", "bpchar", "name", "unknown", "citext", "ltree", "lquery", "ltxtquery"},
            "AnyTextValue": {"varchar", "text", "bpchar", "name", "unknown", "citext"}}
_RUST_NAMES = {"String": "alloc::string::String", "Value": "serde_json::value::Value",
               "AnyTextValue": "windmill_worker::pg_executor::AnyTextValue",
               "Decimal": "rust_decimal::decimal::Decimal", "Uuid": "uuid::Uuid", "Vec<u8>": "alloc::vec::Vec<u8>",
               "NaiveDate": "chrono::naive::date::NaiveDate", "NaiveTime": "chrono::naive::time::NaiveTime",
               "NaiveDateTime": "chrono::naive::datetime::NaiveDateTime",
               "DateTime<Utc>": "chrono::datetime::DateTime<chrono::offset::utc::Utc>"}


@dataclass
class Param:
    rust: str            # the Rust binding convert_val boxes (its ToSql decides what it accepts)
    value: Any           # the Python value sent (None: NULL)
    pg_type: str         # the natural Postgres type of that binding (what query_typed_raw asserts)
    array: bool = False  # Option<Vec<Option<T>>>


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number_text(n) -> str:
    """serde_json's Number to_string: 5, -7, 12.5, 1e+20 as Rust prints f64."""
    return json.dumps(n)


def _parse_int(s: str, rust: str, what: str) -> int:
    """Rust's str::parse::<i16/i32/i64/u32>, its error in pg_executor.rs's words."""
    if not s:
        reason = "cannot parse integer from empty string"
    elif not re.fullmatch(r"[+-]?\d+", s) or (rust == "u32" and s.startswith("-")):
        reason = "invalid digit found in string"
    else:
        lo, hi = _RANGES[rust]
        n = int(s)
        if lo <= n <= hi:
            return n
        reason = "number too large to fit in target type" if n > hi else "number too small to fit in target type"
    raise _anyhow(f"Cannot parse '{s}' as {what}: {reason}")


def _parse_float(s: str, what: str) -> float:
    if re.fullmatch(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)", s, re.I):
        return float(s)
    raise _anyhow(f"Cannot parse '{s}' as {what}: invalid float literal")


_DATE_FORMATS = {
    "date": ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f"),
    "time": ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S.%f",
             "%Y-%m-%dT%H:%M:%SZ"),
    "timestamp": ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S.%f",
                  "%Y-%m-%dT%H:%M:%SZ"),
}


def _parse_temporal(s: str, kind: str):
    """parse_naive_date / parse_naive_time / parse_naive_datetime / parse_datetime_utc: the
    formats chrono's Display and JS frontends produce."""
    if kind == "timestamptz":
        text = s.removesuffix(" UTC")
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)
        raise _execution_err(f"Cannot parse '{s}' as timestamptz: input contains invalid characters")
    for fmt in _DATE_FORMATS[kind]:
        try:
            parsed = dt.datetime.strptime(s, fmt)
        except ValueError:
            continue
        return {"date": parsed.date(), "time": parsed.time()}.get(kind, parsed)
    raise _execution_err(f"Cannot parse '{s}' as {kind}: input contains invalid characters")


def convert_value(value: Any, arg: Arg) -> Param:
    """pg_executor.rs convert_val (main, after windmill-labs/windmill#8999): the binding and
    its natural Postgres type, by the JSON value's kind and the declared type. A bool or a
    number meets text only when the type was written (`$1::text`, `-- $1 x (text)`), not
    when the parser fell back to text; a string is parsed into the declared numeric, bool,
    uuid, date or time type, else sent as text (the server casts it, `$1::jsonb` included)."""
    otyp, typ = arg.otyp, arg.typ
    is_str = isinstance(typ, dict) and "str" in typ
    explicit_text = not arg.inferred and is_str and otyp in ("text", "varchar", "character varying", "char",
                                                             "character")
    if otyp.endswith("[]") and (isinstance(value, list) or value is None):
        return _convert_array(value, otyp[:-2])
    if value is None:
        rust, pg_type = _NULL_TYPES.get(otyp, ("AnyTextValue", "text"))
        return Param(rust, None, pg_type)
    if isinstance(value, bool):
        if explicit_text:
            if otyp in ("char", "character"):
                raise _execution_err(
                    f"Cannot bind a JSON bool to a `{otyp}` arg. `char` and `character` are single-byte / "
                    'fixed-width text — pass the value as a string (e.g. "t" / "f") or change the arg type to `bool`.')
            return Param("String", "true" if value else "false",
                         "varchar" if otyp in ("varchar", "character varying") else "text")
        if otyp in ("jsonb", "json"):
            return Param("Value", value, otyp)
        return Param("bool", value, "bool")
    if isinstance(value, (int, float)):
        return _convert_number(value, otyp, explicit_text)
    if isinstance(value, str):
        return _convert_string(value, otyp)
    if isinstance(value, (list, dict)):
        if otyp in ("jsonb", "json"):
            return Param("Value", value, otyp)
        if isinstance(value, dict) and otyp in ("varchar", "character varying"):
            return Param("String", json.dumps(value, separators=(",", ":")), "varchar")
        if is_str or (isinstance(value, dict) and otyp == "text"):
            return Param("String", json.dumps(value, separators=(",", ":")), "varchar" if otyp == "varchar" else "text")
        return Param("Value", value, "jsonb")
    raise _execution_err(f"Unsupported type in query: {value!r} and signature {json.dumps(otyp)}")


def _convert_number(value, otyp: str, explicit_text: bool) -> Param:
    if explicit_text and otyp in ("text", "varchar", "character varying"):
        return Param("String", _number_text(value), "text" if otyp == "text" else "varchar")
    if _is_int(value) and otyp in _INT_TYPES and (_INT_TYPES[otyp][0] != "i64" or value >= 0):
        rust, pg_type = _INT_TYPES[otyp]
        return Param(rust, value, pg_type)
    if otyp in ("real", "float4"):
        return Param("f32", float(value), "float4")
    if otyp in ("double", "double precision", "float8"):
        return Param("f64", float(value), "float8")
    if otyp in ("numeric", "decimal"):
        return Param("Decimal", decimal.Decimal(str(value)), "numeric")
    if otyp == "oid" and _is_int(value) and value >= 0:
        return Param("u32", value, "oid")
    return Param("i64", value, "int8") if _is_int(value) else Param("f64", float(value), "float8")


def _convert_string(s: str, otyp: str) -> Param:
    if otyp == "uuid":
        try:
            return Param("Uuid", uuid.UUID(s), "uuid")
        except ValueError:  # Error::UuidErr through `?`
            raise SqlJobFailed("UuidErr", f"UuidErr: invalid character: found `{s[:1]}` @{PG_LOCATION}") from None
    if otyp in _INT_TYPES and otyp not in ("char", "character"):
        rust, pg_type = _INT_TYPES[otyp]
        what = {"i16": "smallint", "i32": "integer", "i64": "bigint"}[rust]
        return Param(rust, _parse_int(s, rust, what), pg_type)
    if otyp in ("date", "time", "timetz", "timestamp", "timestamptz"):
        kind = "time" if otyp == "timetz" else otyp
        rust, pg_type = _NULL_TYPES[kind]
        return Param(rust, _parse_temporal(s, kind), pg_type)
    if otyp == "bytea":
        try:
            return Param("Vec<u8>", base64.b64decode(s, validate=True), "bytea")
        except ValueError:
            return Param("Vec<u8>", b"", "bytea")
    if otyp in ("numeric", "decimal"):  # rust_decimal's FromStr: no exponent
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", s):
            raise _anyhow(f"Cannot parse '{s}' as numeric: Invalid decimal: unknown character")
        return Param("Decimal", decimal.Decimal(s), "numeric")
    if otyp in ("real", "float4"):
        return Param("f32", _parse_float(s, "real"), "float4")
    if otyp in ("double", "double precision", "float8"):
        return Param("f64", _parse_float(s, "double"), "float8")
    if otyp == "oid":
        return Param("u32", _parse_int(s, "u32", "oid"), "oid")
    if otyp in ("bool", "boolean"):
        literal = {"true": True, "t": True, "yes": True, "y": True, "1": True, "on": True,
                   "false": False, "f": False, "no": False, "n": False, "0": False, "off": False}.get(s.lower())
        if literal is None:
            raise _anyhow(f"Cannot parse '{s}' as bool: invalid literal")
        return Param("bool", literal, "bool")
    if otyp in ("varchar", "character varying"):
        return Param("String", s, "varchar")
    return Param("AnyTextValue", s, "text")


def _convert_array(values: list | None, base: str) -> Param:
    """convert_vec_val: a list for a `type[]` argument, every item of that type (null allowed)."""
    if base not in _NULL_TYPES:
        raise _anyhow("Unsupported JSON array type")
    rust, pg_type = _NULL_TYPES[base]
    if values is None:
        return Param(rust, None, pg_type + "[]", array=True)
    fits = {"bool": lambda v: isinstance(v, bool), "String": lambda v: isinstance(v, str),
            "Value": lambda v: True, "Uuid": lambda v: isinstance(v, str), "Vec<u8>": lambda v: isinstance(v, str),
            "f32": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "f64": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "Decimal": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}.get(
        rust, lambda v: isinstance(v, str) if rust in ("NaiveDate", "NaiveTime", "NaiveDateTime", "DateTime<Utc>")
        else _is_int(v))
    if not all(v is None or fits(v) for v in values):
        raise _anyhow("Mixed types in array")
    return Param(rust, list(values), pg_type + "[]", array=True)


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
    with CACHE.connection(_dsn(database)) as conn:
        results = []
        for i, statement in enumerate(statements):
            skip = _last_only(strategy, len(statements)) and i < len(statements) - 1
            results.append(_run_statement(conn, statement, sig, args, skip, _first_row(strategy)))
        return collect(strategy, results)


def _dsn(database: dict) -> str:
    """PgDatabase: user postgres, port 5432 and sslmode prefer unless the resource says."""
    from f.dodo.lib.db import resource_to_dsn  # noqa: PLC0415 - one way to make a DSN from a resource

    return resource_to_dsn({"user": "postgres", "port": 5432, "sslmode": "prefer",
                            **{k: v for k, v in database.items() if v not in (None, "")}})


class ConnectionCache:
    """pg_executor.rs CONNECTION_CACHE: one cached connection (a worker runs one job at a time;
    here jobs run on threads, so a job that finds it busy opens its own, as a worker does when
    `try_lock` fails). A job whose target is the cached one reuses it after the session reset
    (`RESET ALL; RESET SESSION AUTHORIZATION; UNLISTEN *; CLOSE ALL; SELECT
    pg_advisory_unlock_all()`, which is also the liveness probe: a failed reset means a new
    connection). A new connection is kept when its target is the most used so far
    (`is_most_used_conn`), else closed; the kept one is closed after 60 s without a query."""

    IDLE_S = 60
    RESET = "RESET ALL; RESET SESSION AUTHORIZATION; UNLISTEN *; CLOSE ALL; SELECT pg_advisory_unlock_all()"

    def __init__(self):
        self._lock = threading.Lock()  # held by the job using the cached connection (Mutex try_lock)
        self._count_lock = threading.Lock()  # CONNECTION_COUNTER's own lock
        self._cached: tuple[str, Any] | None = None
        self._last = 0.0
        self._counts: dict[str, int] = {}
        self.opened = 0  # connections opened, for tests

    @contextmanager
    def connection(self, dsn: str):
        with self._count_lock:
            self._counts[dsn] = self._counts.get(dsn, 0) + 1
        if self._lock.acquire(blocking=False):
            try:
                conn = self._reuse(dsn)
                if conn is not None:
                    yield conn
                    self._last = time.monotonic()
                    return
            finally:
                self._lock.release()
        conn = self._open(dsn)
        try:
            yield conn
        finally:
            self._keep_or_close(dsn, conn)

    def _reuse(self, dsn: str):
        if self._cached is None or self._cached[0] != dsn:
            return None
        conn = self._cached[1]
        if time.monotonic() - self._last <= self.IDLE_S:
            try:
                conn.cursor().execute(self.RESET)
                return conn
            except Exception:  # noqa: BLE001 - a stale connection is replaced
                pass
        self._cached = None
        _close(conn)
        return None

    def _open(self, dsn: str):
        import psycopg2  # noqa: PLC0415 - the runner's driver, as f/dodo/lib/db.py's

        try:
            conn = psycopg2.connect(dsn)
        except psycopg2.OperationalError as e:
            raise SqlJobFailed("Anyhow", f"Error: error connecting to server: {' '.join(str(e).split())} "
                                         f"@{PG_LOCATION}") from None
        conn.autocommit = True  # each statement its own implicit transaction, as tokio-postgres runs them
        self.opened += 1
        return conn

    def _keep_or_close(self, dsn: str, conn) -> None:
        with self._count_lock:
            most_used = self._counts[dsn] >= max(self._counts.values())
        if self._lock.acquire(blocking=False):  # busy: the new connection is closed
            try:
                if (self._cached is None or self._cached[0] != dsn) and most_used and not conn.closed:
                    old, self._cached, self._last = self._cached, (dsn, conn), time.monotonic()
                    conn = old[1] if old else None
            finally:
                self._lock.release()
        if conn is not None:
            _close(conn)

    def clear(self) -> None:
        with self._lock:
            cached, self._cached = self._cached, None
        with self._count_lock:
            self._counts.clear()
        if cached:
            _close(cached[1])


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


CACHE = ConnectionCache()


def _run_statement(conn, statement: str, sig: dict, args: dict, skip: bool, first_only: bool) -> list[dict]:
    import psycopg2  # noqa: PLC0415

    used = [i for i in sorted(statement_arg_indices(statement)) if i in sig]
    statement = _renumber(statement, {oidx: n for n, oidx in enumerate(used, 1)})
    params = [convert_value(_value(args, sig[oidx]), sig[oidx]) for oidx in used]
    typed = all(sig[oidx].otyp in _KNOWN_OTYPS or sig[oidx].otyp.removesuffix("[]") in _KNOWN_OTYPS for oidx in used)
    cur = conn.cursor()
    try:
        if params:
            _execute_prepared(cur, statement, params, typed)
        else:
            cur.execute(statement)
        if skip or cur.description is None:
            return []
        rows = cur.fetchmany(1) if first_only else cur.fetchall()
        columns = [(d.name, d.type_code) for d in cur.description]
        return [{name: cell_to_json(value, oid, name) for (name, oid), value in zip(columns, row)} for row in rows]
    except psycopg2.Error as e:
        raise _db_error(e) from None
    finally:
        cur.close()


def _renumber(statement: str, mapping: dict[int, int]) -> str:
    """$5, $50 -> $1, $2 at the uses' positions only (do_postgresql_inner)."""
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
    (do_postgresql_inner: "explicit user value > declaration default > NULL")."""
    if arg.name in args:
        return args[arg.name]
    return arg.default


def _execute_prepared(cur, statement: str, params: list[Param], typed: bool) -> None:
    """The extended protocol's Parse/Bind/Execute through SQL. Typed (query_typed_raw): the
    parameter types are the bindings' natural types, `PREPARE s(types) AS ...`. Untyped
    (prepare + query_raw): the server infers them, read back from pg_prepared_statements,
    and each binding must accept what it inferred (tokio-postgres ToSql::accepts)."""
    name = f"wm_pg_{uuid.uuid4().hex[:12]}"
    declared = f"({', '.join(p.pg_type for p in params)})" if typed else ""
    cur.execute(f"PREPARE {name}{declared} AS {statement}")
    try:
        cur.execute("SELECT format_type(t.oid, NULL), t.typname, n.nspname, t.typtype FROM pg_prepared_statements s "
                    "CROSS JOIN LATERAL unnest(s.parameter_types) WITH ORDINALITY AS p(typ, i) "
                    "JOIN pg_type t ON t.oid = p.typ::oid JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE s.name = %s ORDER BY p.i", (name,))
        types = cur.fetchall()
        if len(types) != len(params):
            raise _anyhow(f"db error: ERROR: bind message supplies {len(params)} parameters, but prepared statement "
                          f"\"\" requires {len(types)}")
        if not typed:
            for i, (param, (_, typname, schema, kind)) in enumerate(zip(params, types)):
                _check_accepts(i, param, typname, schema, kind)
        placeholders = ", ".join(f"%s::{fmt}" for fmt, _, _, _ in types)
        cur.execute(f"EXECUTE {name}({placeholders})", [_sql_value(p) for p in params])
    finally:
        cur.connection.cursor().execute(f"DEALLOCATE {name}")


def _check_accepts(index: int, param: Param, typname: str, schema: str, kind: str) -> None:
    accepted = _ACCEPTS[param.rust]
    base = typname[1:] if param.array and typname.startswith("_") else None if param.array else typname
    if base in accepted or (param.rust == "AnyTextValue" and kind in ("e", "d") and not param.array):
        return
    rust = _RUST_NAMES.get(param.rust, param.rust)
    rust = f"core::option::Option<alloc::vec::Vec<core::option::Option<{rust}>>>" if param.array else (
        f"core::option::Option<{rust}>" if param.value is None else rust)
    shown = typname if schema in ("public", "pg_catalog") else f"{schema}.{typname}"
    raise _anyhow(f"error serializing parameter {index}: cannot convert between the Rust type `{rust}` "
                  f"and the Postgres type `{shown}`")


def _sql_value(p: Param) -> Any:
    from f.dodo.lib.db import Json  # noqa: PLC0415 - the driver's json adapter, as the bundle uses it

    if p.value is None:
        return None
    if p.rust == "Value":
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

_TEXT = {25, 1043, 1042, 19, 705}   # text, varchar, bpchar, name, unknown
_INT = {21, 23, 20, 26}             # int2, int4, int8, oid
_JSON = {114, 3802}
_ARRAYS = {1000: 16, 1005: 21, 1007: 23, 1016: 20, 1009: 25, 1015: 1043, 199: 114, 3807: 3802, 1021: 700,
           1022: 701, 1231: 1700, 1115: 1114, 1182: 1082, 1183: 1083, 1185: 1184, 1270: 1266, 1001: 17,
           3643: 3614}


def _fraction(t: dt.time) -> str:
    """chrono's `%.f` / NaiveTime Display: nothing, or 3, 6 (or 9) digits."""
    us = t.microsecond
    if not us:
        return ""
    return f".{us // 1000:03d}" if us % 1000 == 0 else f".{us:06d}"


def _float(value: float) -> Any:
    """f64_to_json_number: NaN and the infinities as strings."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def cell_to_json(value: Any, oid: int, column: str) -> Any:
    """pg_cell_to_json_value_with_state (main): json as JSON, integers and floats as numbers,
    numeric as a JSON number (rust_decimal's serde form goes through f64), timestamps in
    ISO 8601 ("2026-01-02T03:04:05", timestamptz RFC 3339 with "+00:00"), bytea "\\x<hex>",
    uuid / inet as text, void as null; any other type read as text."""
    if value is None:
        return None
    if oid in _ARRAYS:
        return [cell_to_json(v, _ARRAYS[oid], column) for v in value]
    if oid == 16 or oid in _INT or oid in _JSON:
        return value
    if oid in (700, 701):
        return _float(value)
    if oid == 1700:
        return _float(float(value))
    if oid == 1114:
        return f"{value.date().isoformat()}T{value.strftime('%H:%M:%S')}{_fraction(value.time())}"
    if oid == 1184:
        utc = value.astimezone(dt.timezone.utc)
        return f"{utc.date().isoformat()}T{utc.strftime('%H:%M:%S')}{_fraction(utc.time())}+00:00"
    if oid == 1082:
        return value.isoformat()
    if oid == 1083:
        return value.strftime("%H:%M:%S") + _fraction(value)
    if oid == 1266:  # TimeTZStr: normalised to UTC
        utc = dt.datetime.combine(dt.date(2000, 1, 1), value).astimezone(dt.timezone.utc).time() \
            if value.tzinfo else value
        return utc.strftime("%H:%M:%S") + _fraction(utc) + "+00:00"
    if oid == 869:
        return str(ipaddress.ip_interface(value).ip)
    if oid == 17:
        return "\\x" + bytes(value).hex()
    if oid == 2278:
        return None
    if isinstance(value, str):  # text-like, enums, domains over text (AnyTextValue), uuid
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    raise SqlJobFailed("Anyhow", f"Error: conversion issue for value at column_name `{column}` with type "
                                 f"oid {oid} @{PG_LOCATION}")
