"""The warehouse export: new inbox rows as day-partitioned Parquet, exactly once per row,
written to an S3-compatible server the test starts (moto's) and read back with DuckDB
over S3 (httpfs), as an analyst would."""

import copy
from pathlib import Path

import pytest

from f.dodo.lib import store, warehouse
from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import envelope
from tests.provider_standins import S3_BUCKET

BUCKET = S3_BUCKET  # the conftest `s3` fixture (moto server) creates it


@pytest.fixture
def prefix(s3, schema_name):
    return f"t/{schema_name}"  # one test's files apart from the others'


def write_to(client):
    def write(key: str, data: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
    return write


def duck(endpoint: str):
    """DuckDB with httpfs (the pip-packaged extension, no download) pointed at the server."""
    import duckdb  # noqa: PLC0415
    import duckdb_extension_httpfs  # noqa: PLC0415

    ext = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{ext}'")
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
                f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)")
    con.execute("SET TimeZone = 'UTC'")
    return con


def read(endpoint: str, prefix: str, columns: str = "webhook_id, date, currency, amount, amount_minor") -> list:
    con = duck(endpoint)
    return con.execute(f"SELECT {columns} FROM read_parquet('s3://{BUCKET}/{prefix}/*/*.parquet', "
                       "hive_partitioning = true) ORDER BY export_seq").fetchall()


def record(conn, name: str, msg: str, at: str) -> None:
    env = copy.deepcopy(envelope(name))
    env["timestamp"] = at
    assert store.record_event(conn, normalize_event(env, msg))["status"] == "recorded"


def test_rows_land_once_per_day_partition_with_exact_money(db, s3, prefix):
    client, endpoint = s3
    record(db.conn, "payment.succeeded", "msg_1", "2026-03-01T23:59:59Z")
    record(db.conn, "payment.succeeded.jpy", "msg_2", "2026-03-02T00:00:01Z")
    record(db.conn, "refund.succeeded.jpy", "msg_3", "2026-03-02T08:00:00Z")
    out = warehouse.export(db.conn, write_to(client), prefix=prefix, lag=0)
    assert out["rows"] == 3 and out["files"] == 2
    assert sorted(out["keys"]) == [f"{prefix}/date=2026-03-01/part-000000000000.parquet",
                                   f"{prefix}/date=2026-03-02/part-000000000000.parquet"]
    rows = read(endpoint, prefix)
    assert [(r[0], str(r[1]), r[2], r[3]) for r in rows] == [
        ("msg_1", "2026-03-01", "USD", "29.99"), ("msg_2", "2026-03-02", "JPY", "4980"),
        ("msg_3", "2026-03-02", "JPY", "1500")]
    assert [r[4] for r in rows] == [2999, 4980, 1500]
    # nothing new: no file, the cursor stays
    again = warehouse.export(db.conn, write_to(client), prefix=prefix, lag=0)
    assert again["rows"] == 0 and again["cursor"] == out["cursor"]
    record(db.conn, "payment.succeeded.kwd", "msg_4", "2026-03-02T09:00:00Z")
    third = warehouse.export(db.conn, write_to(client), prefix=prefix, lag=0)
    assert third["keys"] == [f"{prefix}/date=2026-03-02/part-{out['cursor']:012d}.parquet"]
    rows = read(endpoint, prefix, "webhook_id, amount")
    assert [r[0] for r in rows] == ["msg_1", "msg_2", "msg_3", "msg_4"] and rows[-1][1] == "12.345"


def test_a_run_that_dies_after_writing_is_redone_under_the_same_keys(db, s3, prefix):
    client, endpoint = s3
    record(db.conn, "payment.succeeded", "msg_a", "2026-03-01T10:00:00Z")
    record(db.conn, "payment.succeeded", "msg_b", "2026-03-02T10:00:00Z")
    written = []

    def dies_after_first(key, data):
        write_to(client)(key, data)
        written.append(key)
        raise ConnectionError("worker lost")

    with pytest.raises(ConnectionError):
        warehouse.export(db.conn, dies_after_first, prefix=prefix, lag=0)
    assert len(written) == 1  # one file out, and the cursor did not move:
    assert db.conn.execute("SELECT count(*) FROM export_cursor WHERE last_seq > 0").fetchone()[0] == 0
    out = warehouse.export(db.conn, write_to(client), prefix=prefix, lag=0)
    assert written[0] in out["keys"] and out["rows"] == 2
    assert [r[0] for r in read(endpoint, prefix, "webhook_id")] == ["msg_a", "msg_b"]  # no double


def test_rows_younger_than_the_lag_wait_for_the_next_run(db, s3, prefix):
    client, _ = s3
    record(db.conn, "payment.succeeded", "msg_young", "2026-03-01T10:00:00Z")
    assert warehouse.export(db.conn, write_to(client), prefix=prefix, lag=3600)["rows"] == 0
    assert warehouse.export(db.conn, write_to(client), prefix=prefix, lag=0)["rows"] == 1


def test_a_young_row_holds_back_the_older_started_rows_numbered_after_it(db, s3, prefix):
    """A transaction that started long ago but took its number late (msg_late, received
    2 h ago) commits after a young one numbered before it (msg_young): the run waits for
    both rather than exporting msg_late and moving the cursor past msg_young for good."""
    client, endpoint = s3
    record(db.conn, "payment.succeeded", "msg_young", "2026-03-01T10:00:00Z")
    record(db.conn, "payment.succeeded.jpy", "msg_late", "2026-03-01T11:00:00Z")
    db.conn.execute("UPDATE webhook_events SET received_at = now() - interval '2 hours' WHERE webhook_id = 'msg_late'")
    assert warehouse.export(db.conn, write_to(client), prefix=prefix, lag=60)["rows"] == 0
    db.conn.execute("UPDATE webhook_events SET received_at = now() - interval '2 minutes' WHERE webhook_id = 'msg_young'")
    assert warehouse.export(db.conn, write_to(client), prefix=prefix, lag=60)["rows"] == 2
    assert [r[0] for r in read(endpoint, prefix)] == ["msg_young", "msg_late"]


def test_batches_split_the_rows_and_each_is_a_file_named_by_its_cursor(db, s3, prefix):
    client, endpoint = s3
    for i in range(5):
        record(db.conn, "payment.succeeded", f"msg_{i}", "2026-03-01T10:00:00Z")
    out = warehouse.export(db.conn, write_to(client), prefix=prefix, lag=0, batch=2)
    assert out["rows"] == 5 and out["files"] == 3 and len(set(out["keys"])) == 3
    assert sorted(r[0] for r in read(endpoint, prefix, "webhook_id")) == [f"msg_{i}" for i in range(5)]


def test_the_scheduled_script_writes_through_windmills_object_storage(db, monkeypatch, tmp_path):
    """Through the local runner: wmill.write_s3_file (the workspace object storage, a
    directory locally); DuckDB reads the day partitions back."""
    import duckdb  # noqa: PLC0415

    from local_runner import Config, Runner  # noqa: PLC0415
    from local_runner.demo import ROOT, quiet_wmill_client  # noqa: PLC0415

    record(db.conn, "payment.succeeded", "msg_w", "2026-03-01T10:00:00Z")
    db.conn.execute("UPDATE webhook_events SET received_at = now() - interval '1 hour'")
    monkeypatch.setenv("DODO_OBJECT_STORE", str(tmp_path / "store"))
    quiet_wmill_client()
    runner = Runner(ROOT, Config(resources={"f/dodo/postgres": db.resource}))
    run = runner.run_script("f/dodo/warehouse_export", {"db": "$res:f/dodo/postgres", "schema": db.schema})
    assert run.success, run.result
    assert run.result["keys"] == ["dodo/events/date=2026-03-01/part-000000000000.parquet"]
    got = duckdb.sql(f"SELECT webhook_id, amount, currency FROM read_parquet('{tmp_path}/store/dodo/events/*/*.parquet', "
                     "hive_partitioning = true)").fetchall()
    assert got == [("msg_w", "29.99", "USD")]
