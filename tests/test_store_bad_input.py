"""Bad input, tried as an attacker would, against the record step and a real Postgres.

An undocumented type with a known prefix changes no entity; a negative refund is
rejected; a lone UTF-16 surrogate anywhere cannot fail the record step or the failure
module; the inbox keeps the verified body as received; `attempts` counts deliveries.
"""
import json

import pytest
from fixture_data import FIXTURE_SECRET, envelope, sign
from test_flows_e2e import trigger_event

from f.dodo.lib import store
from f.dodo.lib.normalizer import normalize_event

ENTRY = "f/dodo/webhook"
PAYMENT_ID = "pay_2IjeQm4hqU6RA4Z4kwDee"  # of the payment.succeeded fixture: 29.99 USD


def payment_row(conn) -> tuple:
    return conn.execute("SELECT status, total, refunded, net, event_type FROM payments WHERE payment_id = %s",
                        [PAYMENT_ID]).fetchone()


def revenue(conn) -> list:
    return conn.execute("SELECT day::text, currency, gross::text, refunds::text, net::text FROM revenue_daily"
                        ).fetchall()


def later(env: dict, timestamp: str = "2026-03-03T09:00:00.000Z") -> dict:
    return dict(env, timestamp=timestamp)


# ---------------------------------------------------------------- unknown types

def test_an_undocumented_type_with_a_known_prefix_changes_no_entity(db):
    assert store.record_delivery(db.conn, envelope("payment.succeeded"), "msg_paid")["status"] == "recorded"
    before = (payment_row(db.conn), revenue(db.conn))

    teleported = later(dict(envelope("payment.succeeded"), type="payment.teleported"))
    del teleported["data"]["status"]
    assert normalize_event(teleported, "msg_tele")["category"] == "unknown"
    result = store.record_delivery(db.conn, teleported, "msg_tele")
    assert result["status"] == "recorded" and result["inbox_status"] == "ignored"
    # a caller that claims a category is not believed either: the type decides
    claimed = dict(normalize_event(later(envelope("payment.failed")), "msg_claimed"),
                   event_type="payment.vanished", category="payment")
    assert store.record_event(db.conn, claimed)["inbox_status"] == "ignored"

    assert (payment_row(db.conn), revenue(db.conn)) == before
    assert str(payment_row(db.conn)[1]) == "29.99" and payment_row(db.conn)[0] == "succeeded"
    rows = db.conn.execute("SELECT webhook_id, category, status, payload->>'type' FROM webhook_events "
                           "WHERE webhook_id <> 'msg_paid' ORDER BY 1").fetchall()
    assert rows == [("msg_claimed", "unknown", "ignored", "payment.vanished"),
                    ("msg_tele", "unknown", "ignored", "payment.teleported")]


# ---------------------------------------------------------------- negative money

def test_a_negative_refund_is_rejected_and_changes_nothing(db):
    store.record_delivery(db.conn, envelope("payment.succeeded"), "msg_paid")
    before = (payment_row(db.conn), revenue(db.conn))
    refund = envelope("refund.succeeded")
    refund["data"]["amount"] = -500
    result = store.record_delivery(db.conn, refund, "msg_negative")
    assert result["status"] == "failed" and result["error"] == "data.amount: must not be negative"
    assert db.conn.execute("SELECT count(*) FROM refunds").fetchone()[0] == 0
    assert (payment_row(db.conn), revenue(db.conn)) == before
    status, total, refunded, net, _ = payment_row(db.conn)
    assert (str(total), str(refunded), str(net)) == ("29.99", "0.00", "29.99")
    row = db.conn.execute("SELECT status, last_error FROM webhook_events WHERE webhook_id = 'msg_negative'").fetchone()
    assert row == ("failed", "data.amount: must not be negative")


def test_a_negative_dispute_cannot_raise_revenue(db):
    store.record_delivery(db.conn, envelope("payment.succeeded"), "msg_paid")
    dispute = envelope("dispute.lost")
    dispute["data"].update(payment_id=PAYMENT_ID, amount="-1000", currency="USD")
    result = store.record_delivery(db.conn, dispute, "msg_dispute")
    assert result["status"] == "failed" and result["error"] == "data.amount: must not be negative"
    assert db.conn.execute("SELECT count(*) FROM disputes").fetchone()[0] == 0


# ---------------------------------------------------------------- lone surrogates

SURROGATE = "\ud800x"


def signed(env: dict, msg_id: str) -> dict:
    body = json.dumps(env)  # ensure_ascii: the surrogate travels as the escape "\ud800"
    assert "\\ud800x" in body
    return {"body": body, "headers": sign(body, FIXTURE_SECRET, msg_id)}


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


def test_a_lone_surrogate_is_stored_through_the_entry_flow(runner, db):
    env = envelope("payment.succeeded")
    env["data"]["customer"]["name"] = SURROGATE
    env["data"]["metadata"] = {SURROGATE: SURROGATE, "note": "pair \U0001F600 kept"}
    run = runner.run_flow(ENTRY, event=trigger_event(signed(env, "msg_surrogate")))
    assert run.success, run.result
    name = db.conn.execute("SELECT name FROM customers WHERE customer_id = %s",
                           [env["data"]["customer"]["customer_id"]]).fetchone()[0]
    assert name == "\ufffdx"
    status, payload = db.conn.execute("SELECT status, payload FROM webhook_events WHERE webhook_id = 'msg_surrogate'"
                                      ).fetchone()
    assert status == "processed"
    assert payload["data"]["metadata"] == {"\ufffdx": "\ufffdx", "note": "pair \U0001F600 kept"}


def test_a_lone_surrogate_in_a_rejected_delivery_still_leaves_a_failed_row(runner, db):
    env = envelope("refund.succeeded")
    env["data"]["customer"]["name"] = SURROGATE
    env["data"]["reason"] = SURROGATE
    del env["data"]["payment_id"]
    run = runner.run_flow(ENTRY, event=trigger_event(signed(env, "msg_surrogate_bad")))
    assert not run.success
    [failure] = [j for j in run.jobs if j.kind == "failure"]
    assert failure.success, failure.result
    row = db.conn.execute("SELECT status, failed_step, payload->'data'->>'reason' FROM webhook_events "
                          "WHERE webhook_id = 'msg_surrogate_bad'").fetchone()
    assert row == ("failed", "normalize_record", "\ufffdx")  # no record call: the Python step rejected it


def test_the_failure_module_stores_a_surrogate_error_and_event(db):
    env = envelope("payment.succeeded")
    env["data"]["customer"]["name"] = SURROGATE
    marked = store.mark_failed(db.conn, "msg_mark" + SURROGATE, "boom " + SURROGATE, "crm" + SURROGATE, event=env)
    assert marked["status"] == "failed"
    row = db.conn.execute("SELECT webhook_id, last_error, failed_step, payload->'data'->'customer'->>'name' "
                          "FROM webhook_events").fetchone()
    assert row == ("msg_mark\ufffdx", "boom \ufffdx", "crm\ufffdx", "\ufffdx")


# ---------------------------------------------------------------- the body as received

def test_the_inbox_keeps_the_verified_body_as_received(runner, db):
    body = ('{"business_id":"bus_Nq4bF8vT2xKp7LmR3sYw1","type":"payment.succeeded",'
            '"timestamp":"2026-03-02T10:15:00.000Z","livemode":false,"api_version":"2026-01",'
            '"data":' + json.dumps(envelope("payment.succeeded")["data"]) + '}')
    delivery = {"body": body, "headers": sign(body, FIXTURE_SECRET, "msg_as_received")}
    run = runner.run_flow(ENTRY, event=trigger_event(delivery))
    assert run.success, run.result
    payload = db.conn.execute("SELECT payload FROM webhook_events WHERE webhook_id = 'msg_as_received'"
                              ).fetchone()[0]
    assert payload == json.loads(body)
    assert payload["timestamp"] == "2026-03-02T10:15:00.000Z" and payload["livemode"] is False


# ---------------------------------------------------------------- attempts

def test_attempts_count_the_deliveries_of_one_webhook_id(runner, db):
    body = json.dumps(envelope("payment.succeeded"))
    counts = []
    for _ in range(3):  # Dodo's retries: same webhook-id, each signed anew
        delivery = {"body": body, "headers": sign(body, FIXTURE_SECRET, "msg_thrice")}
        run = runner.run_flow(ENTRY, event=trigger_event(delivery))
        assert run.success, run.result
        counts.append(db.conn.execute("SELECT attempts FROM webhook_events WHERE webhook_id = 'msg_thrice'"
                                      ).fetchone()[0])
    assert counts == [1, 2, 3]


def test_a_rerun_of_the_same_flow_run_is_not_another_delivery(db):
    env = envelope("payment.succeeded")
    first = store.record_delivery(db.conn, env, "msg_rerun", attempt="run-1")
    rerun = store.record_delivery(db.conn, env, "msg_rerun", attempt="run-1")
    redelivered = store.record_delivery(db.conn, env, "msg_rerun", attempt="run-2")
    assert [first["attempts"], rerun["attempts"], redelivered["attempts"]] == [1, 1, 2]
    assert (rerun.get("rerun"), redelivered["status"]) == (True, "duplicate")


def test_a_pasted_normalised_event_is_stored_as_its_delivery(db):
    """UI runs of f/dodo/record pass what was pasted as `received`: a normalised event is
    not a delivery, so the inbox keeps the envelope rebuilt from it (replay takes it)."""
    event = normalize_event(envelope("payment.succeeded"), "msg_pasted")
    store.record_event(db.conn, event, received=event)
    payload = db.conn.execute("SELECT payload FROM webhook_events WHERE webhook_id = 'msg_pasted'").fetchone()[0]
    assert set(payload) == {"business_id", "type", "timestamp", "data"} and payload["type"] == "payment.succeeded"
