"""Delivery ledger on a real Postgres: once per (webhook_id, sink, channel), replay retries
only failures, concurrent workers never double-send."""

import threading
import uuid

import psycopg
import pytest

from f.dodo.lib import db, ledger


@pytest.fixture
def ledger_schema(pg_url):
    """A fresh, fully migrated schema (the ledger is migration v010)."""
    schema = f"ledger_{uuid.uuid4().hex[:8]}"
    db.connect(pg_url, schema).close()
    yield schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def conn(pg_url, ledger_schema):
    with db.connect(pg_url, ledger_schema) as c:
        yield c


def test_sent_delivery_is_not_sent_again(conn):
    calls = []
    send = lambda: calls.append(1) or "ts-1"  # noqa: E731
    first = ledger.deliver_once(conn, "msg_1", "notify", "slack", send)
    again = ledger.deliver_once(conn, "msg_1", "notify", "slack", send)
    assert calls == [1]
    assert first == {"status": "sent", "attempts": 1, "external_id": "ts-1", "error": None, "replayed": False}
    assert again["status"] == "sent" and again["replayed"] is True


def test_failure_is_recorded_then_replay_sends_once(conn):
    def down():
        raise ConnectionError("slack unreachable")

    failed = ledger.deliver_once(conn, "msg_2", "notify", "slack", down)
    assert failed["status"] == "failed" and "slack unreachable" in failed["error"]
    row = ledger.rows(conn, "msg_2")[0]
    assert row["status"] == "failed" and row["attempts"] == 1 and "ConnectionError" in row["last_error"]

    calls = []
    ok = ledger.deliver_once(conn, "msg_2", "notify", "slack", lambda: calls.append(1) or "ts-2")
    ledger.deliver_once(conn, "msg_2", "notify", "slack", lambda: calls.append(1))
    assert calls == [1] and ok["status"] == "sent" and ok["attempts"] == 2
    row = ledger.rows(conn, "msg_2")[0]
    assert row["last_error"] is None and row["external_id"] == "ts-2"


def test_channels_are_independent(conn):
    ledger.deliver_once(conn, "msg_3", "notify", "slack", lambda: "ts")
    ledger.deliver_once(conn, "msg_3", "notify", "email", lambda: 1 / 0)
    ledger.deliver_once(conn, "msg_3", "crm", "hubspot", lambda: {"status": "skipped"})
    got = {(r["sink"], r["channel"]): r["status"] for r in ledger.rows(conn, "msg_3")}
    assert got == {("notify", "slack"): "sent", ("notify", "email"): "failed", ("crm", "hubspot"): "skipped"}


def test_concurrent_workers_send_once(pg_url, ledger_schema):
    calls, barrier = [], threading.Barrier(8)
    lock = threading.Lock()

    def send():
        with lock:
            calls.append(1)
        return "ts"

    results = []

    def worker():
        with db.connect(pg_url, ledger_schema) as c:
            barrier.wait()
            results.append(ledger.deliver_once(c, "msg_4", "notify", "slack", send))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 7
    assert all(r["status"] == "sent" for r in results)


def test_digest_queue(conn):
    assert ledger.enqueue(conn, "msg_5", "notify", "digest", {"line": "a"})
    assert not ledger.enqueue(conn, "msg_5", "notify", "digest", {"line": "a"})
    waiting = ledger.pending(conn, "notify", "digest")
    assert [(w["webhook_id"], w["detail"]) for w in waiting] == [("msg_5", {"line": "a"})]
    ledger.mark(conn, ["msg_5"], "notify", "digest", "sent", "digest-1")
    assert ledger.pending(conn, "notify", "digest") == []


def test_without_a_database_it_just_sends():
    assert ledger.deliver_once(None, "m", "notify", "slack", lambda: "x")["status"] == "sent"
    assert ledger.deliver_once(None, "m", "notify", "slack", lambda: 1 / 0)["status"] == "failed"
