"""PostgreSQL scripts (`.pg.sql`, language postgresql) in the local runner, against a real
Postgres, with the outcomes Windmill's worker gives them (local_runner/pg_script.py cites
pg_executor.rs, windmill-parser-sql and SqlResultCollectionStrategy for each behaviour).

The fixture tree tests/pg_scripts holds a postgresql script laid out as `wmill sync pull`
lays it out (f/pg/record.pg.sql + record.script.yaml) and a flow calling it by path with a
retry, as the entry flow's record step will.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from f.dodo.lib import db as dblib
from local_runner import pg_script
from local_runner.config import Config
from local_runner.runner import Runner
from tools import lint

TREE = Path(__file__).resolve().parent / "pg_scripts"
SCHEMA = "wm_pg_test"
SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE SEQUENCE {SCHEMA}.attempts;
CREATE TABLE {SCHEMA}.calls (id text PRIMARY KEY, body jsonb NOT NULL, attempt bigint NOT NULL);
CREATE FUNCTION {SCHEMA}.record(call jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE n bigint := nextval('{SCHEMA}.attempts');  -- a sequence: not undone by a failed statement
BEGIN
  IF n <= coalesce((call->>'fail_times')::int, 0) THEN
    RAISE EXCEPTION 'transient failure on attempt %', n USING HINT = 'retry later';
  END IF;
  INSERT INTO {SCHEMA}.calls (id, body, attempt) VALUES (call->>'id', call, n);
  RETURN jsonb_build_object('id', call->>'id', 'attempt', n);
END $fn$;
"""


@pytest.fixture
def pg(pg_url):
    """The test schema, fresh; yields an autocommit connection to it."""
    conn = dblib.connect(pg_url, "public", check=False)
    conn.execute(SETUP)
    try:
        yield conn
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.close()


@pytest.fixture
def runner(pg, pg_url, sleeps):
    cfg = Config()
    cfg.resources["f/pg/postgres"] = dict(dblib.dsn_to_resource(pg_url))
    return Runner(TREE, cfg, sleep=sleeps.append)


def _sql(runner, code: str, **args):
    run = runner.run_code("postgresql", code, {"database": "$res:f/pg/postgres", **args})
    return run


def _ok(runner, code: str, **args):
    run = _sql(runner, code, **args)
    assert run.success, run.result
    return run.result


# ---------------------------------------------------------------- the signature


SIGNATURES = [
    "-- result_collection=last_statement_first_row_scalar\n-- $1 call\nSELECT dodo.record_delivery($1::jsonb);",
    "-- $1 name = 'bob'\n-- $2 n = 3\nSELECT $1::text, $2::int, $3::bool, $4::numeric, $5, $6::varchar(10),"
    " $7::JSONB, $8::bigint[], $9::double precision, $10::timestamptz",
    "-- $2 kind (text) = x\nSELECT $1::int; SELECT $2, $1::bigint -- $3 ignored\n",
    "SELECT 'no args'",
    "SELECT $1, $1::int, $1::text, '$2::int' /* $3::int */, $$ $4::int $$",  # first cast wins; quotes skipped
]


def test_signature_is_windmills_parse_sql(tmp_path):
    """The runner's port of parse_pgsql_sig binds the arguments windmill-parser-wasm-regex
    (the parser `wmill` and the worker use) infers: names, types, defaults, order."""
    files = []
    for i, code in enumerate(SIGNATURES):
        files.append(tmp_path / f"s{i}.pg.sql")
        files[-1].write_text(code)
    windmill = lint.sql_signatures(files, tmp_path)
    for code, theirs in zip(SIGNATURES, windmill):
        ours = pg_script.schema_args(code)
        assert [(a["name"], a["typ"], a["has_default"]) for a in ours] == \
            [(a["name"], a["typ"], a["has_default"]) for a in theirs["main"]["args"]], code
    otyps = {a.name: a.otyp for a in pg_script.parse_signature(SIGNATURES[1])}
    assert otyps == {"name": "text", "n": "int", "$3": "bool", "$4": "numeric", "$5": "text", "$6": "varchar",
                     "$7": "jsonb", "$8": "bigint[]", "$9": "double", "$10": "timestamptz"}


# ---------------------------------------------------------------- argument binding


def test_arguments_bind_by_declared_type(runner):
    got = _ok(runner, "-- $1 call\n-- $2 label\n-- $3 n\n-- $4 flag\n-- $5 amount\n"
                      "SELECT $1::jsonb AS call, $2::text AS label, $3::int + 1 AS n, $4::bool AS flag,"
                      " $5::numeric AS amount, $6::bigint AS big, pg_typeof($5::numeric)::text AS t",
              call={"id": "evt_1", "amount": "1000"}, label="JPY", n=41, flag=True, amount=12.5, **{"$6": -7})
    assert got == [{"call": {"id": "evt_1", "amount": "1000"}, "label": "JPY", "n": 42, "flag": True,
                    "amount": 12.5, "big": -7, "t": "numeric"}]


def test_missing_argument_takes_its_declared_default_else_null(runner):
    """The executor binds the job's value, else the `-- $n name = default`, else NULL."""
    got = _ok(runner, "-- $1 call\n-- $2 note = 'none'\n-- $3 n = 3\n"
                      "SELECT $1::jsonb IS NULL AS no_call, $2::text AS note, $3::int AS n", n=4)
    assert got == [{"no_call": True, "note": "none", "n": 4}]


def test_number_meets_text_only_where_text_was_written(runner):
    """A number for `$1::text` is sent as its text; for a bare `$1` (text only by the parser's
    fallback) it keeps its natural type, int8 (convert_val's explicit_text_target)."""
    assert _ok(runner, "SELECT $1::text AS t, pg_typeof($2)::text AS bare", **{"$1": 1000, "$2": 1000}) == \
        [{"t": "1000", "bare": "bigint"}]


def test_string_is_parsed_into_the_declared_type_or_cast_by_the_server(runner):
    got = _ok(runner, "SELECT $1::int + 1 AS n, $2::jsonb AS j, $3::bool AS b",
              **{"$1": "41", "$2": '{"id": "evt_1"}', "$3": "yes"})
    assert got == [{"n": 42, "j": {"id": "evt_1"}, "b": True}]


@pytest.mark.parametrize("code,value,error", [
    ("SELECT $1::int AS n", "5x", {"name": "Anyhow", "message": "Error: Cannot parse '5x' as integer: invalid digit "
                                                                  f"found in string @{pg_script.PG_LOCATION}"}),
    ("SELECT $1::jsonb AS j", "not json", {"name": "Anyhow", "message": "Error: db error: ERROR: invalid input syntax "
                                                                        "for type json\nDETAIL: Token \"not\" is "
                                                                        f"invalid. @{pg_script.PG_LOCATION}"}),
])
def test_string_that_does_not_parse_fails_the_job(runner, code, value, error):
    run = _sql(runner, code, **{"$1": value})
    assert (run.success, run.result) == (False, {"error": error})


def test_undeclarable_type_lets_the_server_type_the_parameter(runner, pg):
    """A cast Windmill cannot name (an enum) sends the statement untyped: the server infers the
    parameter's type and the binding must accept it (a string does, a number does not)."""
    pg.execute(f"CREATE TYPE {SCHEMA}.mood AS ENUM ('ok', 'sad')")
    assert _ok(runner, f"SELECT $1::{SCHEMA}.mood::text AS m", **{"$1": "sad"}) == [{"m": "sad"}]
    run = _sql(runner, f"SELECT $1::{SCHEMA}.mood AS m", **{"$1": 3})
    assert run.result == {"error": {
        "name": "Anyhow",
        "message": "Error: error serializing parameter 0: cannot convert between the Rust type `i64` and the "
                   f"Postgres type `{SCHEMA}.mood` @{pg_script.PG_LOCATION}"}}


def test_arguments_are_renumbered_per_statement(runner):
    """Each statement binds only the `$n` it uses, renumbered from $1 (do_postgresql_inner)."""
    got = _ok(runner, "-- result_collection=all_statements_first_row\n-- $1 a\n-- $2 b\n"
                      "SELECT $2::text AS b; SELECT $1::int AS a, $2::text AS b2;", a=7, b="x")
    assert got == [{"b": "x"}, {"a": 7, "b2": "x"}]


def test_no_database_fails_as_the_worker_does(runner):
    run = runner.run_code("postgresql", "SELECT 1", {})
    assert run.result == {"error": {"name": "BadRequest", "message": "Bad request: Missing database argument"}}


# ---------------------------------------------------------------- result collection

ROWS = "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY 1"


@pytest.mark.parametrize("strategy,expected", [
    (None, [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]),      # default: last_statement_all_rows
    ("last_statement_all_rows", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]),
    ("last_statement_first_row", {"a": 1, "b": "x"}),
    ("last_statement_all_rows_scalar", [1, 2]),
    ("last_statement_first_row_scalar", 1),
    ("all_statements_all_rows", [[{"z": 0}], [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]]),
    ("all_statements_first_row", [{"z": 0}, {"a": 1, "b": "x"}]),
    ("all_statements_first_row_scalar", [0, 1]),
    ("no_such_strategy", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]),  # unknown: the default
])
def test_result_collection(runner, strategy, expected):
    head = f"-- result_collection={strategy}\n" if strategy else ""
    assert _ok(runner, f"{head}SELECT 0 AS z;\n{ROWS};") == expected


def test_first_row_scalar_of_no_row_is_null(runner):
    assert _ok(runner, "-- result_collection=last_statement_first_row_scalar\nSELECT 1 WHERE false") is None


def test_annotation_only_in_the_leading_comment_lines(runner):
    """SqlAnnotations::parse stops at the first line that does not start with `--`."""
    assert _ok(runner, "SELECT 1 AS a;\n-- result_collection=last_statement_first_row_scalar\nSELECT 2 AS a") \
        == [{"a": 2}]


def test_statements_run_one_by_one_without_a_transaction(runner, pg):
    """A later statement's failure does not undo an earlier one (each its own implicit
    transaction); a `;` inside dollar quotes does not split (parse_sql_blocks)."""
    run = _sql(runner, f"INSERT INTO {SCHEMA}.calls VALUES ('kept', '{{}}', 0); SELECT 1/0;")
    assert not run.success
    assert run.result["error"]["message"].startswith("Error: db error: ERROR: division by zero")
    assert pg.execute(f"SELECT id FROM {SCHEMA}.calls").fetchall() == [("kept",)]
    assert _ok(runner, "DO $$BEGIN PERFORM 1; END$$; SELECT '$1;' AS s") == [{"s": "$1;"}]


def test_connection_is_kept_and_reset_between_jobs(runner):
    """The worker's one cached connection: the next job on the same target reuses it after
    RESET ALL (a setting a job made does not leak into the next)."""
    pg_script.CACHE.clear()
    opened = pg_script.CACHE.opened
    first = _ok(runner, "SET statement_timeout = '1234ms'; SELECT pg_backend_pid() AS pid")
    second = _ok(runner, "SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS t")
    assert second == [{"pid": first[0]["pid"], "t": "0"}]
    assert pg_script.CACHE.opened == opened + 1


def test_values_come_back_as_the_worker_prints_them(runner):
    got = _ok(runner, "SELECT 1.50::numeric AS m, '2026-01-02 03:04:05.5+00'::timestamptz AS ts,"
                      " '2026-01-02 03:04:05'::timestamp AS t, '\\x01ff'::bytea AS b, NULL::jsonb AS j")
    assert got == [{"m": 1.5, "ts": "2026-01-02T03:04:05.500+00:00", "t": "2026-01-02T03:04:05",
                    "b": "\\x01ff", "j": None}]


# ---------------------------------------------------------------- in a flow


def test_script_step_by_path_records_one_job(runner, pg):
    run = runner.run_flow("f/pg/entry", {"record": {"id": "evt_ok"}})
    assert run.success, run.result
    assert run.result == {"id": "evt_ok", "attempt": 1}  # the identity step passes the scalar on
    assert [(j.kind, j.path) for j in run.jobs] == [("flow", "f/pg/entry"), ("script", "f/pg/record"),
                                                    ("identity", "f/pg/entry/done")]
    assert pg.execute(f"SELECT body FROM {SCHEMA}.calls").fetchall() == [({"id": "evt_ok"},)]


def test_sql_error_is_retried_under_the_steps_retry(runner, pg, sleeps):
    run = runner.run_flow("f/pg/entry", {"record": {"id": "evt_retry", "fail_times": 1}})
    assert run.success, run.result
    assert run.result == {"id": "evt_retry", "attempt": 2}
    records = [j for j in run.jobs if j.path == "f/pg/record"]
    assert [(j.attempt, j.success) for j in records] == [(0, False), (1, True)]
    assert run.job_count == 4  # flow, two attempts of the SQL step, identity
    assert sleeps == [0.0]


def test_sql_error_fails_the_step_with_the_workers_error(runner, pg):
    run = runner.run_flow("f/pg/entry", {"record": {"id": "evt_bad", "fail_times": 9}})
    assert not run.success
    failed = [j for j in run.jobs if j.path == "f/pg/record"]
    assert len(failed) == 3  # the first run and its two retries
    message = ("Error: db error: ERROR: transient failure on attempt 3\nHINT: retry later"
               f" @{pg_script.PG_LOCATION}")
    assert failed[-1].result == {"error": {"name": "Anyhow", "message": message}}  # no step_id, no stack
    assert run.result == {"seen": {"name": "Anyhow", "message": message}}  # what retry_if and failure read
    assert pg.execute(f"SELECT count(*) FROM {SCHEMA}.calls").fetchone() == (0,)


def test_bench_counts_a_sql_job_apart_from_python_processes(pg, pg_url):
    """bench/wm_jobs.py ProcessRunner: a postgresql job runs in process, is no Python process
    (not in `costs`), and is listed in `sql_jobs`, a failed attempt included."""
    from bench.wm_jobs import ProcessRunner  # noqa: PLC0415

    cfg = Config()
    cfg.resources["f/pg/postgres"] = dict(dblib.dsn_to_resource(pg_url))
    bench_runner = ProcessRunner(TREE, cfg, {"PATH": "/usr/bin:/bin"})
    run = bench_runner.run_flow("f/pg/entry", {"record": {"id": "evt_bench", "fail_times": 1}})
    assert run.success, run.result
    assert bench_runner.costs == []
    assert [(c.label, c.success, c.cpu_ms) for c in bench_runner.sql_jobs] == [("f/pg/record", False, 0.0),
                                                                                ("f/pg/record", True, 0.0)]


# ---------------------------------------------------------------- lint


def test_lint_checks_a_pg_script_against_windmills_parser(tmp_path):
    tree = tmp_path / "tree"
    (tree / "f" / "pg").mkdir(parents=True)
    for name in ("record.pg.sql", "record.script.yaml"):
        (tree / "f" / "pg" / name).write_text((TREE / "f" / "pg" / name).read_text())
    assert lint.check_sql_schemas(tree) == []
    sql = tree / "f" / "pg" / "record.pg.sql"
    sql.write_text(sql.read_text() + "-- $2 note\nSELECT $2::int;\n")
    assert lint.check_sql_schemas(tree) == [
        "f/pg/record.script.yaml: schema properties ['call', 'database'] != main arguments ['call', 'database', 'note']",
        "f/pg/record.script.yaml: schema required ['call', 'database'] != ['call', 'database', 'note']"]


def test_lint_checks_the_flow_step_inputs_of_a_pg_script(tmp_path):
    assert lint.check_flows(TREE) == [] and lint.check_yaml(TREE) == []
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree)
    flow_file = tree / "f/pg/entry__flow/flow.yaml"
    flow = yaml.safe_load(flow_file.read_text())
    del flow["value"]["modules"][0]["value"]["input_transforms"]["call"]
    flow_file.write_text(yaml.safe_dump(flow))
    assert lint.check_flows(tree) == ["f/pg/entry__flow/flow.yaml: step record: required inputs not set ['call']"]
