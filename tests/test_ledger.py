"""Delivery ledger on a real Postgres: once per (webhook_id, sink, channel), replay retries
only failures, concurrent workers never double-send, a Postgres restart between the
provider's acceptance and the 'sent' write does not send again, leases."""

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from f.dodo.lib import db as dblib
from f.dodo.lib import db, ledger
from local_runner.pg_server import start_server


@pytest.fixture
def ledger_schema(pg_url):
    """A fresh, fully migrated schema (the ledger is migration v010)."""
    schema = f"ledger_{uuid.uuid4().hex[:8]}"
    db.connect(pg_url, schema, migrate=True).close()
    yield schema
    with dblib.connect(pg_url, check=False) as conn:
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
        time.sleep(0.2)  # the others find the live lease and wait for the outcome
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


# --- Leases: a dead sender's claim ----------------------------------------------------

def _die_while_sending(url: str, schema: str, webhook_id: str, lease: float) -> None:
    """Another process claims the delivery, then dies inside the provider call."""
    code = textwrap.dedent(f"""
        import os
        from f.dodo.lib import db, ledger
        conn = db.connect({url!r}, {schema!r})
        ledger.deliver_once(conn, {webhook_id!r}, "notify", "slack", lambda: os._exit(3), lease={lease})
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), capture_output=True, text=True)
    assert done.returncode == 3, done.stderr


def _row(conn, webhook_id: str, channel: str = "slack") -> dict:
    status, attempts, claim, external_id = conn.execute(
        "SELECT status, attempts, claim, external_id FROM delivery_ledger WHERE webhook_id = %s "
        "AND sink = 'notify' AND channel = %s", (webhook_id, channel)).fetchone()
    return {"status": status, "attempts": attempts, "claim": claim, "external_id": external_id}


def test_a_live_lease_is_not_sent_again(pg_url, ledger_schema, conn):
    _die_while_sending(pg_url, ledger_schema, "msg_live", lease=3600)
    calls = []
    now = ledger.deliver_once(conn, "msg_live", "notify", "slack", lambda: calls.append(1), wait=0)
    polled = ledger.deliver_once(conn, "msg_live", "notify", "slack", lambda: calls.append(1), wait=0.3)
    assert calls == []
    assert now["status"] == polled["status"] == "in_progress"
    row = _row(conn, "msg_live")
    assert row["status"] == "sending" and row["attempts"] == 1 and row["claim"]


def test_an_expired_lease_is_reclaimed(pg_url, ledger_schema, conn):
    _die_while_sending(pg_url, ledger_schema, "msg_dead", lease=0)
    calls = []
    result = ledger.deliver_once(conn, "msg_dead", "notify", "slack", lambda: calls.append(1) or "ts-9", wait=0)
    assert calls == [1]
    assert result == {"status": "sent", "attempts": 2, "external_id": "ts-9", "error": None, "replayed": False}
    assert _row(conn, "msg_dead") == {"status": "sent", "attempts": 2, "claim": None, "external_id": "ts-9"}


def test_a_late_failure_does_not_overwrite_the_reclaimed_success(pg_url, ledger_schema, conn):
    """A sender outlives its lease, another worker reclaims and sends: the first one's
    failure is not written over the second one's success."""
    def slow_then_down():
        with db.connect(pg_url, ledger_schema) as other:
            second = ledger.deliver_once(other, "msg_late", "notify", "slack", lambda: "ts-2", wait=0)
            assert second["status"] == "sent" and second["attempts"] == 2
        raise ConnectionError("slack timed out")

    first = ledger.deliver_once(conn, "msg_late", "notify", "slack", slow_then_down, lease=0)
    assert first["status"] == "failed"
    assert _row(conn, "msg_late") == {"status": "sent", "attempts": 2, "claim": None, "external_id": "ts-2"}


def test_a_connection_inside_a_transaction_is_refused(conn):
    with conn.transaction(), pytest.raises(ValueError, match="outside any transaction"):
        ledger.deliver_once(conn, "msg_tx", "notify", "slack", lambda: "ts")
    assert ledger.rows(conn, "msg_tx") == []


# --- Postgres restarts between the provider's acceptance and the 'sent' write ----------

@pytest.fixture(scope="module")
def own_server():
    """A server of this module's own, started here even when DATABASE_URL is set:
    restarting the session's would cut other tests off, and a server given by URL is not
    ours to restart. Without binaries or the wheel, start_server fails naming the fix."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DATABASE_URL", raising=False)
        server = start_server()
    assert server.managed, f"the {server.provider!r} server cannot be restarted by this test"
    yield server
    server.stop()


@pytest.fixture
def restartable(own_server):
    schema = f"restart_{uuid.uuid4().hex[:8]}"
    with db.connect(own_server.url, schema, migrate=True) as c:
        yield own_server, c, schema


def test_restart_after_the_provider_accepted_sends_once(restartable):
    server, conn, schema = restartable
    calls = []

    def send():
        calls.append(1)
        server.restart()  # Slack took it; the ledger's connection dies before 'sent' is written
        return "ts-1"

    first = ledger.deliver_once(conn, "msg_r1", "notify", "slack", send)
    assert first["status"] == "sent" and first["external_id"] == "ts-1"
    assert conn.broken  # the caller's connection really was lost
    # The retried step (and the next channel on the same dead connection) reconnect.
    again = ledger.deliver_once(conn, "msg_r1", "notify", "slack", send)
    email = ledger.deliver_once(conn, "msg_r1", "notify", "email", lambda: "<m@x>")
    assert calls == [1]
    assert again["status"] == "sent" and again["replayed"] is True
    assert email["status"] == "sent" and email["replayed"] is False
    with db.connect(server.url, schema) as fresh:
        assert _row(fresh, "msg_r1") == {"status": "sent", "attempts": 1, "claim": None, "external_id": "ts-1"}


def test_restart_while_the_sent_write_retries_sends_once(restartable):
    """The server goes down right after the provider answered and comes back while the
    ledger keeps retrying its write."""
    server, conn, _ = restartable
    calls, restarting = [], []

    def send():
        calls.append(1)
        thread = threading.Thread(target=server.restart)
        thread.start()
        restarting.append(thread)
        return "sid-1"

    result = ledger.deliver_once(conn, "msg_r2", "notify", "sms", send)
    restarting[0].join()
    assert result["status"] == "sent" and result["external_id"] == "sid-1"
    again = ledger.deliver_once(conn, "msg_r2", "notify", "sms", send)
    assert calls == [1] and again["replayed"] is True
