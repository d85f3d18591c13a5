"""The MySQL/MariaDB mirror against a real MariaDB server (local_runner/mysql_server.py):
exactly once under duplicates, newer wins under reordering (against the independent
model of tests/postgres_events.py), refunds in exact money, text verbatim, concurrent
runs, a server restart mid-batch, and the scheduled script's skip when unconfigured."""
from __future__ import annotations

import copy
import threading
import uuid
from decimal import Decimal

import pymysql
import pytest

from f.dodo.lib import mysql_mirror as mirror
from f.dodo.lib import store
from f.dodo.lib.normalizer import normalize_event
from local_runner.mysql_server import start_mariadb
from tests.fixture_data import envelope
from tests.postgres_events import Model, make_stream, with_duplicates

MIRRORED_KINDS = ("payment", "refund", "subscription")


@pytest.fixture(scope="module")
def mariadb():
    server = start_mariadb()
    yield server
    server.stop()


@pytest.fixture
def target(mariadb):
    """A fresh database on the server, as a Windmill `mysql` resource; dropped after."""
    name = f"dodo_{uuid.uuid4().hex[:10]}"
    with _admin(mariadb) as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield dict(mariadb.resource, database=name)
    with _admin(mariadb) as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


class _admin:
    def __init__(self, server):
        self.conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="", autocommit=True)

    def __enter__(self):
        return self.conn.cursor()

    def __exit__(self, *exc):
        self.conn.close()


@pytest.fixture
def my(target):
    conn = mirror.connect(target)
    yield conn
    conn.close()


def _rows(conn, sql: str) -> list[dict]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _by(conn, table: str, key: str) -> dict[str, dict]:
    return {r[key]: r for r in _rows(conn, f"SELECT * FROM dodo_{table}")}


def _mirrored(stream):
    return [(w, e) for w, e in stream if e["type"].split(".")[0] in MIRRORED_KINDS]


def _assert_matches_model(conn, unique) -> None:
    """Every mirrored table holds what applying each distinct delivery once, in
    (event time, webhook id) order, gives (the model never looks at MySQL or the store)."""
    model = Model(_mirrored(unique))
    payments = _by(conn, "payments", "payment_id")
    assert {k: (p["status"], p["total_minor"]) for k, p in payments.items()} == \
        {k: (d["status"], d["total_amount"]) for k, d in model.state("payments").items()}
    refunds = _by(conn, "refunds", "refund_id")
    assert {k: (r["status"], r["amount_minor"], r["payment_id"]) for k, r in refunds.items()} == \
        {k: (d["status"], d["amount"], d["payment_id"]) for k, d in model.state("refunds").items()}
    subs = _by(conn, "subscriptions", "subscription_id")
    assert {k: (s["status"], s["quantity"], s["recurring_pre_tax_minor"]) for k, s in subs.items()} == \
        {k: (d["status"], d["quantity"], d["recurring_pre_tax_amount"]) for k, d in model.state("subscriptions").items()}
    customers = _by(conn, "customers", "customer_id")
    assert {k: (c["email"], c["name"]) for k, c in customers.items()} == \
        {k: (c["email"], c["name"]) for k, c in model.customers.items()}
    for table, rows, key in (("payments", payments, "payment_id"), ("refunds", refunds, "refund_id"),
                             ("subscriptions", subs, "subscription_id")):
        assert {k: (r["event_webhook_id"], r["event_at"]) for k, r in rows.items()} == \
            {k: (w, model.when(table, k).replace(tzinfo=None)) for k, (w, _) in model.entities[table].items()}
    refunded = model.refunded()
    assert {k: p["refunded_minor"] for k, p in payments.items()} == {k: refunded.get(k, 0) for k in payments}
    for p in payments.values():  # exact major units: the minor amounts at the currency's scale
        unit = Decimal(1).scaleb(-{"USD": 2, "JPY": 0, "KWD": 3, "EUR": 2}[p["currency"]])
        assert p["total"] == p["total_minor"] * unit and isinstance(p["total"], Decimal)
        assert p["net"] == (p["total_minor"] - p["refunded_minor"]) * unit


def test_stream_exactly_once_and_newer_wins(my):
    unique = make_stream(400, seed=3)
    stream = with_duplicates(unique, 600, seed=5)  # shuffled: event time order is lost
    outcomes = [mirror.mirror_event(my, normalize_event(env, wid)) for wid, env in stream]
    mirrored_ids = {w for w, _ in _mirrored(unique)}
    assert outcomes.count("applied") == len(mirrored_ids)
    assert outcomes.count("duplicate") == sum(1 for w, _ in _mirrored(stream)) - len(mirrored_ids)
    assert {r["webhook_id"] for r in _rows(my, "SELECT webhook_id FROM dodo_mirror_deliveries")} == mirrored_ids
    _assert_matches_model(my, unique)
    before = _rows(my, "SELECT * FROM dodo_payments ORDER BY payment_id")
    again = [mirror.mirror_event(my, normalize_event(env, wid)) for wid, env in _mirrored(unique)]
    assert set(again) == {"duplicate"}
    assert _rows(my, "SELECT * FROM dodo_payments ORDER BY payment_id") == before


def _payment(pid: str, currency: str, total: int, at: str, wid: str, status: str = "succeeded") -> tuple:
    env = envelope("payment.succeeded")
    env["type"], env["timestamp"] = f"payment.{status}", at
    env["data"].update(payment_id=pid, status=status, currency=currency, settlement_currency=currency,
                       total_amount=total, tax=0, settlement_amount=total, created_at=at)
    return wid, env


def _refund(rid: str, pid: str, currency: str, amount: int, at: str, wid: str, status: str = "succeeded") -> tuple:
    env = envelope("refund.succeeded")
    env["type"], env["timestamp"] = f"refund.{status}", at
    env["data"].update(refund_id=rid, payment_id=pid, status=status, amount=amount, currency=currency, created_at=at,
                       customer={"customer_id": f"cus_{rid}", "email": f"{rid}@example.com", "name": rid})
    return wid, env  # a customer of its own: no shared customer row serialises two refunds


def _apply(conn, *deliveries) -> list[str]:
    return [mirror.mirror_event(conn, normalize_event(env, wid)) for wid, env in deliveries]


def test_refunds_add_to_the_payment_in_exact_money(my):
    _apply(my, _refund("ref_a", "pay_jpy", "JPY", 300, "2026-03-01T10:05:00Z", "msg_r1"),  # before its payment
           _payment("pay_jpy", "JPY", 1000, "2026-03-01T10:00:00Z", "msg_p1"))
    pay = _by(my, "payments", "payment_id")["pay_jpy"]
    assert (pay["refunded_minor"], pay["refunded"], pay["net"]) == (300, Decimal("300"), Decimal("700"))
    _apply(my, _refund("ref_b", "pay_jpy", "JPY", 200, "2026-03-01T10:06:00Z", "msg_r2", status="failed"),
           _payment("pay_kwd", "KWD", 1500, "2026-03-01T10:00:00Z", "msg_p2"),
           _refund("ref_c", "pay_kwd", "KWD", 125, "2026-03-01T10:07:00Z", "msg_r3"),
           _refund("ref_d", "pay_kwd", "KWD", 250, "2026-03-01T10:08:00Z", "msg_r4"))
    pays = _by(my, "payments", "payment_id")
    assert (pays["pay_jpy"]["total"], pays["pay_jpy"]["refunded"], pays["pay_jpy"]["net"]) == \
        (Decimal("1000"), Decimal("300"), Decimal("700"))
    assert (pays["pay_kwd"]["total"], pays["pay_kwd"]["refunded"], pays["pay_kwd"]["net"]) == \
        (Decimal("1.500"), Decimal("0.375"), Decimal("1.125"))
    # the failed refund succeeds later: it now counts; its stale failure afterwards does not undo it
    _apply(my, _refund("ref_b", "pay_jpy", "JPY", 200, "2026-03-01T11:00:00Z", "msg_r5"),
           _refund("ref_b", "pay_jpy", "JPY", 200, "2026-03-01T10:30:00Z", "msg_r6", status="failed"))
    pays = _by(my, "payments", "payment_id")
    assert (pays["pay_jpy"]["refunded_minor"], pays["pay_jpy"]["refunded"], pays["pay_jpy"]["net"]) == \
        (500, Decimal("500"), Decimal("500"))
    types = {r["COLUMN_NAME"]: r["DATA_TYPE"] for r in _rows(
        my, "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'dodo_payments'")}
    assert {types[c] for c in ("total", "tax", "refunded", "net", "settlement")} == {"decimal"}


def test_customer_text_is_stored_verbatim_and_safe(my):
    wid, env = _payment("pay_txt", "USD", 4999, "2026-03-02T09:00:00Z", "msg_txt")
    name = "Zoë 🚀 O'Brien\"; DROP TABLE dodo_payments; -- 山田"
    env["data"]["customer"] = {"customer_id": "cus_txt", "email": "zoe+x@example.com", "name": name,
                               "phone_number": "+1 555 0100", "metadata": {"note": "=cmd|'/c calc'!A1", "ü": "✓"}}
    _apply(my, (wid, env))
    customer = _by(my, "customers", "customer_id")["cus_txt"]
    assert customer["name"] == name and customer["email"] == "zoe+x@example.com"
    assert customer["metadata"] == '{"note": "=cmd|\'/c calc\'!A1", "ü": "✓"}'
    assert _by(my, "payments", "payment_id")["pay_txt"]["total"] == Decimal("49.99")
    # a lone surrogate (JSON "\ud800" decodes to one) is not UTF-8: U+FFFD, the event still lands
    wid2, env2 = _payment("pay_txt", "USD", 4999, "2026-03-02T09:05:00Z", "msg_txt2")
    env2["data"]["customer"] = dict(env["data"]["customer"], name="A\ud800B")
    assert _apply(my, (wid2, env2)) == ["applied"]
    assert _by(my, "customers", "customer_id")["cus_txt"]["name"] == "A\ufffdB"


def test_customer_older_description_never_replaces_newer(my):
    new_wid, new = _payment("pay_c1", "USD", 100, "2026-03-03T12:00:00Z", "msg_new")
    old_wid, old = _payment("pay_c2", "USD", 100, "2026-03-03T08:00:00Z", "msg_old")
    new["data"]["customer"] = {"customer_id": "cus_c", "email": "new@example.com", "name": "New"}
    old["data"]["customer"] = {"customer_id": "cus_c", "email": "old@example.com", "name": "Old"}
    _apply(my, (new_wid, new), (old_wid, old))
    customer = _by(my, "customers", "customer_id")["cus_c"]
    assert (customer["email"], customer["name"], customer["event_webhook_id"]) == ("new@example.com", "New", "msg_new")
    assert str(customer["first_seen_at"]) == "2026-03-03 08:00:00"  # the older event moves it earlier


def test_same_time_ties_resolve_by_webhook_id_in_any_order(my, target):
    a = _payment("pay_tie", "USD", 100, "2026-03-04T10:00:00Z", "msg_a", status="processing")
    b = _payment("pay_tie", "USD", 100, "2026-03-04T10:00:00Z", "msg_b", status="succeeded")
    _apply(my, b, a)
    other = mirror.connect(dict(target))
    try:
        with other.cursor() as cur:
            cur.execute("DELETE FROM dodo_payments")
            cur.execute("DELETE FROM dodo_mirror_deliveries")
        _apply(other, a, b)
    finally:
        other.close()
    assert _by(my, "payments", "payment_id")["pay_tie"]["status"] == "succeeded"


def _call(wid_env: tuple) -> dict:
    return store.build_call(normalize_event(wid_env[1], wid_env[0]))


def _wait_for_lock_wait(server, waiting: int = 1) -> None:
    """Until `waiting` InnoDB transactions wait for a lock (bounded; no timing asserted)."""
    for _ in range(400):
        with _admin(server) as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")
            if cur.fetchone()[0] >= waiting:
                return
        threading.Event().wait(0.05)
    raise AssertionError("the second transaction never waited for the first one's locks")


def _in_thread(fn) -> tuple[threading.Thread, list]:
    errors: list = []

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_concurrent_refunds_of_one_payment_both_count(target, mariadb):
    """Two refunds of one payment in overlapping transactions: the second one's sum waits
    for the first one's refund (a locking read), so neither misses the other."""
    a, b = mirror.connect(target), mirror.connect(target)
    try:
        _apply(a, _payment("pay_pair", "USD", 10000, "2026-03-05T10:00:00Z", "msg_pp"))
        a.begin()
        mirror.apply_call(a.cursor(), _call(_refund("ref_1", "pay_pair", "USD", 100, "2026-03-05T11:00:00Z", "msg_1")))
        thread, errors = _in_thread(lambda: _apply(b, _refund("ref_2", "pay_pair", "USD", 101,
                                                                "2026-03-05T11:00:01Z", "msg_2")))
        _wait_for_lock_wait(mariadb)
        a.commit()
        thread.join()
        assert errors == []
        pay = _by(a, "payments", "payment_id")["pay_pair"]
        assert (pay["refunded_minor"], pay["refunded"], pay["net"]) == (201, Decimal("2.01"), Decimal("97.99"))
    finally:
        a.close()
        b.close()


def test_a_deadlocked_event_is_retried_whole(target, mariadb):
    """A waits for B and B for A: InnoDB rolls one back (1213); the mirror runs that
    event's transaction again, so all three refunds count and each delivery once."""
    a, b = mirror.connect(target), mirror.connect(target)
    try:
        a.begin()
        cur = a.cursor()
        mirror.apply_call(cur, _call(_payment("pay_dl", "USD", 10000, "2026-03-06T10:00:00Z", "msg_dp")))
        mirror.apply_call(cur, _call(_refund("ref_a1", "pay_dl", "USD", 100, "2026-03-06T11:00:00Z", "msg_a1")))
        thread, errors = _in_thread(lambda: _apply(b, _refund("ref_b1", "pay_dl", "USD", 10,
                                                                "2026-03-06T11:00:01Z", "msg_b1")))
        _wait_for_lock_wait(mariadb)  # B's refund row is written, its sum waits for A's
        mirror.apply_call(cur, _call(_refund("ref_a2", "pay_dl", "USD", 1, "2026-03-06T11:00:02Z", "msg_a2")))
        a.commit()  # A's sum needed B's refund row: the cycle InnoDB broke by rolling B back
        thread.join()
        assert errors == []
        pay = _by(a, "payments", "payment_id")["pay_dl"]
        assert (pay["refunded_minor"], pay["net"]) == (111, Decimal("98.89"))
        assert len(_rows(a, "SELECT webhook_id FROM dodo_mirror_deliveries")) == 4
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------- the batch from Postgres

def _record(db, deliveries) -> None:
    for wid, env in deliveries:
        assert store.record_delivery(db.conn, copy.deepcopy(env), wid)["status"] in ("recorded", "duplicate")


def test_batch_from_the_postgres_inbox_once_per_delivery(db, my):
    unique = make_stream(300, seed=9)
    first, second = unique[:200], unique[200:]
    _record(db, with_duplicates(first, 260, seed=2))
    result = mirror.mirror_batch(db.conn, my, page=37)
    assert result["applied"] == len(_mirrored(first)) and result["pages"] >= 2
    _assert_matches_model(my, first)
    again = mirror.mirror_batch(db.conn, my, page=37)  # the overlap window is read again: nothing applies
    assert again["applied"] == 0 and again["duplicate"] == len(_mirrored(first))
    _record(db, second)
    more = mirror.mirror_batch(db.conn, my, page=37)
    assert more["applied"] == len(_mirrored(second))
    _assert_matches_model(my, unique)
    cursor = _rows(my, "SELECT processed_at, webhook_id FROM dodo_mirror_cursor WHERE name = 'inbox'")
    last = db.conn.execute("SELECT processed_at, webhook_id FROM webhook_events WHERE status = 'processed' "
                           "AND category IN ('payment', 'refund', 'subscription') "
                           "ORDER BY processed_at DESC, webhook_id DESC LIMIT 1").fetchone()
    assert [(r["processed_at"], r["webhook_id"]) for r in cursor] == [(last[0].replace(tzinfo=None), last[1])]
    # a delivery whose Postgres transaction took its time before the cursor but committed
    # after the last run (processed_at set back by hand) is still mirrored: the overlap
    late = _payment("pay_late", "USD", 777, "2026-03-09T10:00:00Z", "msg_late")
    _record(db, [late])
    db.conn.execute("UPDATE webhook_events SET processed_at = %s - interval '2 minutes' "
                    "WHERE webhook_id = 'msg_late'", [last[0]])
    assert mirror.mirror_batch(db.conn, my, page=37)["applied"] == 1
    assert _by(my, "payments", "payment_id")["pay_late"]["total"] == Decimal("7.77")


def test_two_concurrent_batches_mirror_each_delivery_once(db, target):
    unique = make_stream(250, seed=21)
    _record(db, unique)
    results, errors = [], []

    def run() -> None:
        my = mirror.connect(target)
        try:
            with db.connect() as pg:
                results.append(mirror.mirror_batch(pg, my, page=25))
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            my.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r["applied"] for r in results) == len(_mirrored(unique))
    my = mirror.connect(target)
    try:
        _assert_matches_model(my, unique)
    finally:
        my.close()


def test_server_restart_mid_batch_loses_and_doubles_nothing(db, target, mariadb):
    unique = make_stream(200, seed=33)
    _record(db, unique)
    my = mirror.connect(target)
    applied, calls = [], {"n": 0}
    real = mirror.apply_call

    def crash_midway(cur, call):
        calls["n"] += 1
        if calls["n"] == 60:  # inside the third page's transaction: the server goes away
            mariadb.kill()
        return real(cur, call)

    mirror.apply_call = crash_midway
    try:
        with pytest.raises(pymysql.err.OperationalError):
            mirror.mirror_batch(db.conn, my, page=25)
    finally:
        mirror.apply_call = real
    assert not my.open
    mariadb.start()  # InnoDB recovery: the two committed pages stay, the third is gone
    my = mirror.connect(target)
    try:
        done = _rows(my, "SELECT COUNT(*) AS n FROM dodo_mirror_deliveries")[0]["n"]
        assert done == 50  # the two pages of 25 that committed, whole; the third rolled back
        applied.append(mirror.mirror_batch(db.conn, my, page=25)["applied"])
        assert done + applied[0] == len(_mirrored(unique))
        _assert_matches_model(my, unique)
    finally:
        my.close()


def test_script_without_a_mysql_resource_is_skipped(db, httpserver, monkeypatch):
    from f.dodo import mysql_mirror as script  # noqa: PLC0415

    monkeypatch.setenv("WM_BASE_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("WM_WORKSPACE", "ws")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    monkeypatch.delenv("BASE_INTERNAL_URL", raising=False)
    httpserver.expect_ordered_request(  # Windmill's answer for a resource that does not exist
        "/api/w/ws/resources/get_value_interpolated/f/dodo/mysql", method="GET",
        headers={"Authorization": "Bearer job-token"}).respond_with_data("not found", status=404)
    assert script.main(db.resource, schema=db.schema) == {
        "skipped": "no f/dodo/mysql resource: create a mysql resource there to mirror"}
    assert len(httpserver.log) == 1


def test_script_mirrors_into_the_given_resource(db, target):
    from f.dodo import mysql_mirror as script  # noqa: PLC0415

    wid, env = _payment("pay_s", "EUR", 1234, "2026-03-06T10:00:00Z", "msg_s")
    _record(db, [(wid, env)])
    result = script.main(db.resource, target, schema=db.schema)
    assert (result["applied"], result["cursor"]["webhook_id"]) == (1, "msg_s")
    my = mirror.connect(target)
    try:
        assert _by(my, "payments", "payment_id")["pay_s"]["total"] == Decimal("12.34")
    finally:
        my.close()


def test_a_value_the_columns_cannot_hold_is_rejected_not_blocking(db, my):
    """A too-long value fails only its own event: recorded as rejected with MySQL's
    reason (nothing silently truncated), and the rest of the page is mirrored."""
    long_network = _payment("pay_long", "USD", 100, "2026-03-07T10:00:00Z", "msg_long")
    long_network[1]["data"]["card_network"] = "N" * 65
    fine = _payment("pay_fine", "USD", 250, "2026-03-07T10:02:00Z", "msg_fine")
    _record(db, [long_network, fine])
    result = mirror.mirror_batch(db.conn, my, page=10)
    assert (result["applied"], result["rejected"]) == (1, 1)
    assert set(_by(my, "payments", "payment_id")) == {"pay_fine"}
    outcomes = {r["webhook_id"]: (r["outcome"], r["error"]) for r in _rows(my, "SELECT * FROM dodo_mirror_deliveries")}
    assert outcomes["msg_fine"] == ("applied", None)
    assert outcomes["msg_long"][0] == "rejected" and "card_network" in outcomes["msg_long"][1]


def test_bad_resource_names_the_fix(target):
    with pytest.raises(mirror.ConfigError, match="f/dodo/mysql: the mysql resource lacks database; edit it in Windmill"):
        mirror.connect(dict(target, database=""))
    with pytest.raises(mirror.ConfigError, match="f/dodo/mysql: cannot connect to MySQL at 127.0.0.1:.*Access denied.*; check the resource"):
        mirror.connect(dict(target, password="wrong"))


def test_the_mirror_page_reads_an_index_range_not_the_whole_inbox(db):
    """Migration v045: the page query walks webhook_events_mirror_scan_idx in its own
    order (no scan of every processed row, no sort) from the cursor on."""
    _record(db, make_stream(120, seed=5))
    db.conn.execute("ANALYZE webhook_events")
    with db.conn.transaction():
        # a small table: ask what a large one gets (a plain index scan in the query's order)
        db.conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in db.conn.execute(
            "EXPLAIN " + mirror._PAGE, ["2026-01-01T00:00:00Z", "", 500]).fetchall())
    assert "webhook_events_mirror_scan_idx" in plan and "Sort" not in plan, plan


# ---------------------------------------------------------------- TLS (the server offers it: mysql_server.py)

def _cipher(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return cur.fetchone()[1]


def _other_ca() -> str:
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", f"{d}/k.pem",
                        "-out", f"{d}/c.pem"], check=True, capture_output=True)
        return Path(d, "c.pem").read_text()


def test_tls_with_the_workspace_ca_checks_the_certificate_and_its_name(target, mariadb):
    """ssl + the CA variable: verified (chain and host name); the wrong CA or a host the
    certificate does not name fails with the fix; ssl alone encrypts without checking, as
    Windmill's own MySQL scripts do, and says so."""
    secure = dict(target, ssl=True, host="localhost")  # the certificate names localhost only
    my = mirror.connect(secure, mariadb.ca_pem)
    try:
        assert _cipher(my) and mirror.tls(secure, mariadb.ca_pem)[1] == "verified"
    finally:
        my.close()
    for resource, ca in ((secure, _other_ca()), (dict(secure, host="127.0.0.1"), mariadb.ca_pem)):
        with pytest.raises(mirror.ConfigError, match="certificate failed verification.*; set f/dodo/mysql_ca_cert"):
            mirror.connect(resource, ca).close()
    unverified = dict(target, ssl=True)
    my = mirror.connect(unverified)
    try:
        assert _cipher(my)  # encrypted all the same
        assert mirror.tls(unverified)[1].startswith("encrypted, certificate not verified (set the variable "
                                                    "f/dodo/mysql_ca_cert")
    finally:
        my.close()
    assert mirror.tls(target)[1].startswith("preferred: encrypted if the server offers it, certificate not verified")
    with pytest.raises(mirror.ConfigError, match="f/dodo/mysql_ca_cert: it holds no PEM certificate"):
        mirror.connect(secure, "not a certificate")


def test_script_verifies_with_the_ca_variable(db, target, mariadb, httpserver, monkeypatch):
    from f.dodo import mysql_mirror as script  # noqa: PLC0415

    monkeypatch.setenv("WM_BASE_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("WM_WORKSPACE", "ws")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    monkeypatch.delenv("BASE_INTERNAL_URL", raising=False)
    httpserver.expect_request("/api/w/ws/variables/get_value/f/dodo/mysql_ca_cert", method="GET",
                              headers={"Authorization": "Bearer job-token"}).respond_with_json(mariadb.ca_pem)
    _record(db, [_payment("pay_tls", "USD", 500, "2026-03-08T10:00:00Z", "msg_tls")])
    result = script.main(db.resource, dict(target, ssl=True, host="localhost"), schema=db.schema)
    assert (result["applied"], result["tls"]) == (1, "verified")
