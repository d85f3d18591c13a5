"""The entry flow's record step as one SQL statement: `record_delivery(jsonb)` (migration
v050) called on a plain connection, as the Windmill worker's PostgreSQL executor calls it
(the role's default search_path, not the bundle's schema), with the call the preprocessor
builds (f/dodo/lib/record_call.py `fast_path`)."""
import psycopg2
import pytest
from fixture_data import envelope

from f.dodo.lib import db as dblib
from f.dodo.lib.record_call import fast_path

ATTEMPT = "a" * 32


@pytest.fixture
def schema_name():
    return "dodo"  # the script names its schema: dodo.record_delivery


@pytest.fixture
def plain(db):
    """A connection with the server's default search_path (public), as the worker's."""
    conn = psycopg2.connect(db.url)
    conn.autocommit = True
    yield conn
    conn.close()


def call(conn, record: dict) -> dict:
    cur = conn.cursor()
    cur.execute("SELECT dodo.record_delivery(%s::jsonb)", [dblib.Json(record)])
    return cur.fetchone()[0]


def test_a_verified_delivery_is_recorded_once_whatever_the_callers_search_path(db, plain):
    fast = fast_path(envelope("payment.succeeded"), "msg_sql_1", ATTEMPT)
    first = call(plain, fast["record"])
    assert first["status"] == "recorded" and first["webhook_id"] == "msg_sql_1" and first["applied"] is True
    total = db.conn.execute("SELECT total_minor FROM payments WHERE payment_id = %s",
                            [fast["normalized"]["entity_id"]]).fetchone()[0]
    assert total == 2999
    again = call(plain, fast["record"])  # the same run's step retried after its commit
    assert again["status"] == "recorded" and again.get("rerun") is True
    other = call(plain, dict(fast["record"], attempt="b" * 32))  # a redelivery: another run
    assert other["status"] == "duplicate"
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 1


def test_a_self_test_delivery_says_test(db, plain):
    from f.dodo.lib import probe
    env = envelope("payment.succeeded")
    env["data"]["metadata"] = dict(probe.MARKER)
    fast = fast_path(env, probe.ID_PREFIX + "sql", ATTEMPT)
    assert call(plain, fast["record"])["test"] is True
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 0


def test_a_value_the_database_rejects_fails_as_event_rejected_and_changes_nothing(db, plain):
    env = envelope("payment.succeeded")
    env["data"]["total_amount"] = 2**63  # beyond bigint
    fast = fast_path(env, "msg_sql_big", ATTEMPT)
    with pytest.raises(psycopg2.DataError) as caught:
        call(plain, fast["record"])
    assert str(caught.value).startswith("EventRejected: ") and "bigint" in str(caught.value)
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0


def test_a_delivery_the_normaliser_rejects_takes_the_python_step():
    env = envelope("payment.succeeded")
    del env["data"]["payment_id"]
    assert fast_path(env, "msg_sql_noid", ATTEMPT) == {}


def test_a_schema_behind_the_code_is_refused_naming_the_fix(db, plain):
    fast = fast_path(envelope("payment.succeeded"), "msg_sql_behind", ATTEMPT)
    with pytest.raises(psycopg2.Error) as caught:
        call(plain, dict(fast["record"], needs=fast["record"]["needs"] + 1))  # code newer than the schema
    assert str(caught.value).startswith(f"SchemaBehind: schema dodo is at version {fast['record']['needs']}, the code "
                                        f"needs {fast['record']['needs'] + 1}: run f/dodo/migrate with the owner role")
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0
