"""The record step against a real PostgreSQL server: exactly once, order-safe, no bad rows."""
from __future__ import annotations

import collections
import copy
import threading

import pytest

from f.dodo.lib import db as dblib
from f.dodo.lib import store
from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import envelope
from tests.postgres_events import Model, make_stream, with_duplicates

TABLES = ["customers", "payments", "refunds", "disputes", "subscriptions", "license_keys",
          "subscription_status_history"]


def snapshot(conn) -> dict:
    return {t: conn.execute(f"SELECT to_jsonb(x) FROM {t} x ORDER BY 1::text").fetchall() for t in TABLES}


def deliver_concurrently(db, stream, workers=8):
    errors, results = [], []
    barrier = threading.Barrier(workers)

    def work(part):
        try:
            with db.connect() as conn:
                barrier.wait()
                for wid, env in part:
                    results.append(store.record_delivery(conn, env, wid))
        except Exception as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(stream[i::workers],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_duplicates_reordering_and_concurrency_match_the_model(db):
    unique = make_stream(700)
    stream = with_duplicates(unique, 1000)
    assert len(stream) == 1000 and len({w for w, _ in stream}) == 700

    results = deliver_concurrently(db, stream)
    statuses = [r["status"] for r in results]
    assert statuses.count("recorded") == 700 and statuses.count("duplicate") == 300

    model, c = Model(unique), db.conn
    inbox = c.execute("SELECT webhook_id, status, attempts FROM webhook_events").fetchall()
    assert sorted(w for w, _, _ in inbox) == sorted(w for w, _ in unique)
    deliveries = collections.Counter(w for w, _ in stream)  # attempts counts every delivery of an id
    assert {w: (s, a) for w, s, a in inbox} == {w: ("processed", n) for w, n in deliveries.items()}

    payments = {r[0]: r[1:] for r in c.execute(
        "SELECT payment_id, status, total_minor, currency, customer_id, refunded_minor, event_webhook_id FROM payments")}
    refunded = model.refunded()
    assert payments == {
        k: (d["status"], d["total_amount"], d["currency"], d["customer"]["customer_id"], refunded.get(k, 0),
            model.entities["payments"][k][0])
        for k, d in model.state("payments").items()}

    refunds = {r[0]: r[1:] for r in c.execute("SELECT refund_id, payment_id, status, amount_minor FROM refunds")}
    assert refunds == {k: (d["payment_id"], d["status"], d["amount"]) for k, d in model.state("refunds").items()}

    disputes = {r[0]: r[1:] for r in c.execute("SELECT dispute_id, status, amount_minor FROM disputes")}
    assert disputes == {k: (d["dispute_status"], int(d["amount"])) for k, d in model.state("disputes").items()}

    subs = {r[0]: r[1:] for r in c.execute(
        "SELECT subscription_id, status, recurring_pre_tax_minor, quantity, event_at FROM subscriptions")}
    assert subs == {k: (d["status"], d["recurring_pre_tax_amount"], d["quantity"], model.when("subscriptions", k))
                    for k, d in model.state("subscriptions").items()}

    keys = {r[0]: r[1] for r in c.execute("SELECT license_key_id, status FROM license_keys")}
    assert keys == {k: d["status"] for k, d in model.state("license_keys").items()}

    customers = {r[0]: r[1:] for r in c.execute("SELECT customer_id, email, name FROM customers")}
    assert customers == {k: (d["email"], d["name"]) for k, d in model.customers.items()}

    history = set(c.execute("SELECT subscription_id, webhook_id, status, occurred_at FROM subscription_status_history"))
    assert history == model.history  # older events' history rows are kept too


def test_an_older_event_never_overwrites_newer_state_and_ties_are_deterministic(db):
    def payment(wid, ts, status, amount):
        env = envelope("payment.succeeded")
        env.update(type=f"payment.{status}", timestamp=ts)
        env["data"].update(status=status, total_amount=amount)
        return wid, env

    newer = payment("msg_b", "2026-03-02T10:00:00Z", "succeeded", 200)
    older = payment("msg_c", "2026-03-02T09:00:00Z", "failed", 100)
    tie_low = payment("msg_a", "2026-03-02T10:00:00Z", "processing", 300)
    for wid, env in (newer, older, tie_low):
        r = store.record_delivery(db.conn, env, wid)
        assert r["status"] == "recorded"
    row = db.conn.execute("SELECT status, total_minor, event_webhook_id FROM payments").fetchone()
    assert row == ("succeeded", 200, "msg_b")  # msg_a ties on time but sorts first: it loses
    assert db.conn.execute("SELECT count(*) FROM webhook_events WHERE status = 'processed'").fetchone()[0] == 3

    # The reverse arrival order gives the same state.
    other = db.connect()
    other.execute("TRUNCATE payments, webhook_events, customers")
    for wid, env in (tie_low, older, newer):
        store.record_delivery(other, env, wid)
    assert other.execute("SELECT status, total_minor, event_webhook_id FROM payments").fetchone() == row
    other.close()


def test_a_refund_updates_the_payment_whichever_arrives_first(db):
    pay, ref = envelope("payment.succeeded"), envelope("refund.succeeded")
    ref["data"]["payment_id"] = pay["data"]["payment_id"]
    r = store.record_delivery(db.conn, ref, "msg_refund")
    assert r["status"] == "recorded"
    store.record_delivery(db.conn, pay, "msg_pay")
    total, refunded, net = db.conn.execute("SELECT total_minor, refunded_minor, net FROM payments").fetchone()
    assert refunded == ref["data"]["amount"] and str(net) == "19.99"  # 2999 - 1000 cents


def test_a_dropped_connection_leaves_nothing_and_the_retry_applies_once(db):
    env = envelope("subscription.active")
    call = store.build_call(normalize_event(env, "msg_drop"))
    before = snapshot(db.conn)

    victim = db.connect(autocommit=False)
    victim.execute("SELECT record_event(%s::jsonb)", [dblib.Json(call)])  # applied, not committed
    waiting: list = []
    retry = threading.Thread(target=lambda: waiting.append(store.record_delivery(db.connect(), env, "msg_drop")))
    retry.start()  # the concurrent retry blocks on the uncommitted inbox row

    db.conn.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
    with pytest.raises(dblib.OperationalError):
        victim.commit()
    retry.join(timeout=60)
    assert waiting and waiting[0]["status"] == "recorded"  # the retry applied it once

    assert store.record_delivery(db.conn, env, "msg_drop")["status"] == "duplicate"
    after = snapshot(db.conn)
    assert len(after["subscriptions"]) == len(before["subscriptions"]) + 1
    assert len(after["subscription_status_history"]) == 1
    # the killed transaction left nothing; the retry and the duplicate are two deliveries
    assert db.conn.execute("SELECT status, attempts FROM webhook_events").fetchall() == [("processed", 2)]


def test_a_killed_transaction_alone_leaves_no_trace(db):
    env = envelope("payment.succeeded")
    victim = db.connect(autocommit=False)
    victim.execute("SELECT record_event(%s::jsonb)", [dblib.Json(store.build_call(normalize_event(env, "msg_k")))])
    db.conn.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
    with pytest.raises(dblib.OperationalError):
        victim.commit()
    assert all(rows == [] for rows in snapshot(db.conn).values())
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0
    assert store.record_delivery(db.conn, env, "msg_k")["status"] == "recorded"
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 1


@pytest.mark.parametrize("family,key", [("payment.succeeded", "payment_id"), ("refund.succeeded", "refund_id"),
                                        ("subscription.active", "subscription_id"), ("dispute.lost", "dispute_id"),
                                        ("license_key.created", "id"), ("payout.success", "payout_id")])
def test_a_payload_missing_its_id_is_recorded_failed_and_changes_nothing(db, family, key):
    good = envelope("payment.succeeded")
    store.record_delivery(db.conn, good, "msg_good")
    before = snapshot(db.conn)

    bad = envelope(family)
    del bad["data"][key]
    if isinstance(bad["data"].get("customer"), dict):
        bad["data"]["customer"] = dict(good["data"]["customer"], email="changed@example.com")
    result = store.record_delivery(db.conn, bad, "msg_bad")
    assert result["status"] == "failed" and key in result["error"]
    status, error, attempts = db.conn.execute(
        "SELECT status, last_error, attempts FROM webhook_events WHERE webhook_id = 'msg_bad'").fetchone()
    assert status == "failed" and key in error and attempts == 1
    assert snapshot(db.conn) == before

    # Delivered again it is attempted again (and fails again): nothing slips in.
    again = store.record_delivery(db.conn, bad, "msg_bad")
    assert again["status"] == "failed" and again["attempts"] == 2
    assert snapshot(db.conn) == before


def test_a_normalised_event_missing_its_id_fails_in_the_store_too(db):
    event = normalize_event(envelope("payment.succeeded"), "msg_n")
    del event["data"]["payment_id"]
    result = store.record_event(db.conn, event)
    assert result["status"] == "failed" and "payment_id" in result["error"]
    assert snapshot(db.conn) == {t: [] for t in TABLES}


def test_an_amount_postgres_cannot_hold_is_recorded_failed(db):
    env = envelope("payment.succeeded")
    env["data"]["total_amount"] = 10**20  # beyond bigint
    result = store.record_delivery(db.conn, env, "msg_big")
    assert result["status"] == "failed", result
    assert "DataError" in result["error"] or "out of range" in result["error"], result
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 0
    assert db.conn.execute("SELECT status FROM webhook_events").fetchone()[0] == "failed"


INJECTIONS = ["'; DROP TABLE payments; --", "Robert'); DROP TABLE customers;--", "$fn$; SELECT 1; $fn$",
              "\\'; TRUNCATE webhook_events; --", "%s %(x)s {} $1", "\" OR \"1\"=\"1", "émoji 😀 ' \\ \u202e"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_strings_are_stored_verbatim_and_harmless(db, evil):
    env = envelope("dispute.lost")
    d = env["data"]
    d.update(reason=evil, remarks=evil)
    d["customer"].update(email=evil, name=evil)
    event = normalize_event(env, f"msg_{evil}")
    # The normaliser rejects odd ids; the store must be safe on its own, so ids get it too.
    event["data"].update(dispute_id=f"dsp_{evil}", payment_id=f"pay_{evil}")
    event["data"]["customer"]["customer_id"] = f"cus_{evil}"
    result = store.record_event(db.conn, event)
    assert result["status"] == "recorded", result
    row = db.conn.execute("SELECT dispute_id, payment_id, reason, remarks FROM disputes").fetchone()
    assert row == (f"dsp_{evil}", f"pay_{evil}", evil, evil)
    assert db.conn.execute("SELECT customer_id, email, name FROM customers").fetchone() == (f"cus_{evil}", evil, evil)
    assert db.conn.execute("SELECT webhook_id, payload->'data'->>'reason' FROM webhook_events").fetchone() == \
        (f"msg_{evil}", evil)
    tables = {r[0] for r in db.conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [db.schema])}
    assert {"payments", "customers", "webhook_events", "disputes"} <= tables


def test_mark_failed_and_replay_reset(db):
    env = envelope("payment.succeeded")
    assert store.record_delivery(db.conn, env, "msg_f")["status"] == "recorded"
    out = store.mark_failed(db.conn, "msg_f", "crm: 502 Bad Gateway", "crm_sync")
    assert out == {"webhook_id": "msg_f", "status": "failed", "attempts": 1}
    # A failure before the store (e.g. in normalisation) still leaves an inbox row.
    store.mark_failed(db.conn, "msg_never", "boom", "normalize", event=env)
    assert db.conn.execute("SELECT status, failed_step, event_type FROM webhook_events WHERE webhook_id = 'msg_never'"
                           ).fetchone() == ("failed", "normalize", "payment.succeeded")

    reset = store.reset_for_replay(db.conn, ["msg_f"])
    assert [r["webhook_id"] for r in reset] == ["msg_f"]
    # The stored payload is the delivery itself: replay feeds it back as the event.
    assert normalize_event(reset[0]["payload"], "msg_f") == normalize_event(env, "msg_f")
    again = store.record_delivery(db.conn, reset[0]["payload"], "msg_f")
    assert again["status"] == "recorded" and again["attempts"] == 2
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 1
    assert store.record_delivery(db.conn, env, "msg_f")["status"] == "duplicate"


def _inbox_attempt(db, wid: str) -> tuple:
    return db.conn.execute("SELECT status, attempts, delivery_attempt FROM webhook_events WHERE webhook_id = %s",
                           [wid]).fetchone()


def test_the_same_delivery_attempt_recording_again_is_recorded_and_changes_nothing(db):
    env = envelope("refund.succeeded")
    first = store.record_delivery(db.conn, env, "msg_rr", attempt="run-a")
    assert first["status"] == "recorded" and "rerun" not in first
    before = snapshot(db.conn), _inbox_attempt(db, "msg_rr")
    # The same flow run's record step again (a restarted zombie job, or a retry after the
    # commit's answer was lost): its own commit is not a duplicate.
    again = store.record_delivery(db.conn, env, "msg_rr", attempt="run-a")
    assert again == {"status": "recorded", "rerun": True, "webhook_id": "msg_rr", "inbox_status": "processed",
                     "attempts": 1, "applied": False}
    assert (snapshot(db.conn), _inbox_attempt(db, "msg_rr")) == before
    assert before[1] == ("processed", 1, "run-a")


@pytest.mark.parametrize("attempt", ["run-b", None, ""])
def test_another_delivery_attempt_or_none_is_a_duplicate(db, attempt):
    env = envelope("payment.succeeded")
    assert store.record_delivery(db.conn, env, "msg_dup", attempt="run-a")["status"] == "recorded"
    result = store.record_event(db.conn, normalize_event(env, "msg_dup"), attempt=attempt)
    assert result["status"] == "duplicate" and "rerun" not in result
    assert result["attempts"] == 2  # a second delivery of the id
    assert _inbox_attempt(db, "msg_dup") == ("processed", 2, "run-a")  # the recording attempt stays


def test_without_attempts_a_second_record_is_a_duplicate_as_before(db):
    env = envelope("subscription.active")
    assert store.record_delivery(db.conn, env, "msg_ui")["status"] == "recorded"
    assert store.record_delivery(db.conn, env, "msg_ui")["status"] == "duplicate"
    assert _inbox_attempt(db, "msg_ui") == ("processed", 2, None)


def test_a_failed_row_applied_again_belongs_to_the_attempt_that_applied_it(db):
    env = envelope("payment.succeeded")
    assert store.record_delivery(db.conn, env, "msg_fa", attempt="run-a")["status"] == "recorded"
    store.mark_failed(db.conn, "msg_fa", "crm: 502", "crm")  # a sink failed after the record
    again = store.record_delivery(db.conn, env, "msg_fa", attempt="run-b")
    assert again["status"] == "recorded" and again["attempts"] == 2 and "rerun" not in again
    assert _inbox_attempt(db, "msg_fa") == ("processed", 2, "run-b")
    assert store.record_delivery(db.conn, env, "msg_fa", attempt="run-b")["rerun"] is True
    assert store.record_delivery(db.conn, env, "msg_fa", attempt="run-a")["status"] == "duplicate"


def test_a_rejected_event_keeps_its_attempt(db):
    env = envelope("payment.succeeded")
    env["data"]["total_amount"] = 10**20  # beyond bigint: the DataError fallback call
    assert store.record_delivery(db.conn, env, "msg_big_a", attempt="run-a")["status"] == "failed"
    bad = copy.deepcopy(env)
    del bad["data"]["payment_id"]  # rejected by the normaliser
    assert store.record_delivery(db.conn, bad, "msg_bad_a", attempt="run-a")["status"] == "failed"
    assert _inbox_attempt(db, "msg_big_a") == ("failed", 1, "run-a")
    assert _inbox_attempt(db, "msg_bad_a") == ("failed", 1, "run-a")


def test_store_event_entry_script_with_a_resource_dict(db):
    from f.dodo import store_event

    env = envelope("payment.succeeded.jpy")
    result = store_event.main(env, db.resource, schema=db.schema, webhook_id="msg_entry")
    assert result["status"] == "recorded"
    assert db.conn.execute("SELECT total, currency FROM payments").fetchone()[1] == "JPY"
    bad = copy.deepcopy(env)
    del bad["data"]["payment_id"]
    with pytest.raises(ValueError, match="payment_id"):
        store_event.main(bad, db.resource, schema=db.schema, webhook_id="msg_entry_bad")
    assert db.conn.execute("SELECT status FROM webhook_events WHERE webhook_id = 'msg_entry_bad'").fetchone()[0] == "failed"


def test_a_seed_transform_flat_payload_is_recorded(db):
    flat = {"event_type": "payment.succeeded", "payment_id": "pay_flat1", "amount": "12.34", "currency": "USD",
            "customer_email": "flat@example.com", "customer_name": "Flat", "timestamp": "2026-03-02T10:00:00Z"}
    event = normalize_event(flat, "msg_flat")  # a regression here must fail, never skip
    assert store.record_event(db.conn, event)["status"] == "recorded"
    row = db.conn.execute("SELECT payment_id, total_minor, total::text, data FROM payments").fetchone()
    assert row[:3] == ("pay_flat1", 1234, "12.34") and row[3] == flat
    assert db.conn.execute("SELECT payload FROM webhook_events").fetchone()[0] == flat
