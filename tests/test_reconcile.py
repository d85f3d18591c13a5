"""Reconciliation against a stand-in of the Dodo API (tests/dodo_api_standin.py)."""

from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta, timezone

import pytest

from f.dodo import reconcile as entry
from f.dodo.lib import reconcile as rec
from f.dodo.lib.store import record_delivery
from tests.dodo_api_standin import DodoApi
from tests.ops_stream import BUSINESS, build_stream, iso

AFTER_STREAM = datetime(2026, 6, 1, tzinfo=timezone.utc)
ENTITY_TABLES = {"payments": "payment_id", "refunds": "refund_id", "disputes": "dispute_id",
                 "subscriptions": "subscription_id", "customers": "customer_id"}
# Which event last wrote a row: a reconciled row holds a synthetic event instead.
BOOKKEEPING = {"event_type", "event_at", "event_webhook_id", "updated_at", "first_seen_at"}


@pytest.fixture(scope="module")
def stream():
    return build_stream()


def snapshot(conn) -> dict:
    """Every entity row, business columns only, keyed by table and id."""
    out = {}
    for table, key in ENTITY_TABLES.items():
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")
        names = [d.name for d in cur.description]
        out[table] = {row[names.index(key)]: {n: v for n, v in zip(names, row) if n not in BOOKKEEPING}
                      for row in cur.fetchall()}
    return out


def record_all(conn, deliveries) -> None:
    for webhook_id, envelope in deliveries:
        assert record_delivery(conn, envelope, webhook_id)["status"] == "recorded"


def test_lost_deliveries_end_in_the_full_streams_state(make_db, httpserver, stream):
    full, partial = make_db(), make_db()
    record_all(full.conn, stream.deliveries)
    rng = random.Random(5)
    dropped = set(rng.sample(range(len(stream.deliveries)), k=len(stream.deliveries) // 20))
    record_all(partial.conn, [d for i, d in enumerate(stream.deliveries) if i not in dropped])
    assert snapshot(partial.conn) != snapshot(full.conn), "the dropped 5% must leave visible gaps"

    api = DodoApi(httpserver, stream.final)
    with rec.client_from_resource(api.resource) as client:
        result = rec.reconcile(partial.conn, client, now=AFTER_STREAM)

    assert snapshot(partial.conn) == snapshot(full.conn)
    assert result["drift"] and all(r["action"] == "recorded" for r in result["drift"])
    # Only what drifted was fetched in full.
    fetched = [p for p, _ in api.requests if p.count("/") == 2]
    assert len(fetched) == len(result["drift"])

    # A second run finds nothing to do and records nothing.
    with rec.client_from_resource(api.resource) as client:
        again = rec.reconcile(partial.conn, client, now=AFTER_STREAM + timedelta(days=1))
    assert again["drift"] == []
    assert snapshot(partial.conn) == snapshot(full.conn)


def test_pages_through_every_page_and_filters_by_cursor(make_db, httpserver):
    created = datetime(2026, 3, 1, tzinfo=timezone.utc)
    payments = {}
    for n in range(250):
        p = {"payment_id": f"pay_{n:04d}", "business_id": BUSINESS, "status": "succeeded", "currency": "USD",
             "total_amount": 100 + n, "created_at": iso(created + timedelta(hours=n)), "customer": None}
        payments[p["payment_id"]] = p
    api = DodoApi(httpserver, {"payments": payments, "subscriptions": {}, "refunds": {}, "disputes": {}})
    db = make_db()
    with rec.client_from_resource(api.resource) as client:
        first = rec.reconcile(db.conn, client, kinds=("payments",), now=AFTER_STREAM)
        pages = [int(q["page_number"]) for p, q in api.requests if p == "/payments"]
        assert pages == [0, 1, 2]  # 0-based: the SDK's own auto-pager would skip page 1
        assert first["summary"][0]["listed"] == 250 and first["summary"][0]["missing"] == 250
        assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 250
        assert rec.read_cursor(db.conn, "payments") == AFTER_STREAM

        api.requests.clear()
        second = rec.reconcile(db.conn, client, kinds=("payments",), lookback_days=2,
                               now=AFTER_STREAM + timedelta(days=1))
    since = [q.get("created_at_gte") for p, q in api.requests if p == "/payments"]
    assert since and rec._instant(since[0]) == AFTER_STREAM - timedelta(days=2)
    assert second["summary"][0]["listed"] == 0 and second["drift"] == []


def test_never_overwrites_newer_webhook_state(make_db, httpserver, stream):
    db = make_db()
    sub_id, sub = next((k, v) for k, v in stream.final["subscriptions"].items() if v["status"] == "active")
    api_state = dict(sub, status="on_hold")  # what the API said when reconciliation fetched it
    newer = copy.deepcopy(dict(sub, status="cancelled", cancelled_at=iso(AFTER_STREAM + timedelta(minutes=5))))
    envelope = {"business_id": BUSINESS, "type": "subscription.cancelled",
                "timestamp": iso(AFTER_STREAM + timedelta(minutes=5)), "data": newer}
    assert record_delivery(db.conn, envelope, "msg_newer")["status"] == "recorded"

    api = DodoApi(httpserver, {"payments": {}, "subscriptions": {sub_id: api_state}, "refunds": {}, "disputes": {}})
    with rec.client_from_resource(api.resource) as client:
        result = rec.reconcile(db.conn, client, kinds=("subscriptions",), now=AFTER_STREAM)
    assert [r["action"] for r in result["drift"]] == ["kept newer state"]
    status, webhook = db.conn.execute(
        "SELECT status, event_webhook_id FROM subscriptions WHERE subscription_id = %s", [sub_id]).fetchone()
    assert (status, webhook) == ("cancelled", "msg_newer")


def test_dry_run_reports_drift_and_changes_nothing(make_db, httpserver, stream):
    db = make_db()
    api = DodoApi(httpserver, stream.final)
    with rec.client_from_resource(api.resource) as client:
        result = rec.reconcile(db.conn, client, dry_run=True, now=AFTER_STREAM)
    assert len(result["drift"]) == sum(len(v) for v in stream.final.values())
    assert {r["action"] for r in result["drift"]} == {"would record"}
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0
    assert rec.read_cursor(db.conn, "payments") is None


def test_synthetic_events_are_deterministic_and_typed_by_status():
    fam = rec.BY_KIND["disputes"]
    obj = {"dispute_id": "dis_1", "dispute_status": "dispute_won", "amount": "100", "currency": "USD"}
    a = rec.synthetic_event(fam, obj, AFTER_STREAM, None)
    b = rec.synthetic_event(fam, dict(reversed(list(obj.items()))), AFTER_STREAM + timedelta(days=1), None)
    assert a[0] == b[0] and a[0].startswith("reconcile:dispute:dis_1:")
    assert a[1]["type"] == "dispute.won" and a[1]["timestamp"] == "2026-06-01T00:00:00Z"
    changed = rec.synthetic_event(fam, dict(obj, dispute_status="dispute_lost"), AFTER_STREAM, None)
    assert changed[0] != a[0]


def test_differences_compares_instants_and_loose_amounts():
    stored = {"status": "active", "next_billing_date": "2026-03-01T00:00:00.000000Z", "amount": 4999,
              "customer": {"customer_id": "c", "email": "a@b", "phone_number": None}}
    item = {"status": "active", "next_billing_date": "2026-03-01T00:00:00Z", "amount": "4999",
            "customer": {"customer_id": "c", "email": "a@b"}, "not_stored": 1}
    assert rec.differences(item, stored) == []
    assert rec.differences(dict(item, status="on_hold"), stored) == ["status"]
    assert rec.differences(item, None) == ["(missing)"]


def test_entry_script_reads_resources(make_db, httpserver, stream):
    db = make_db()
    api = DodoApi(httpserver, {"payments": {}, "subscriptions": {}, "refunds": {}, "disputes": stream.final["disputes"]})
    # heal_sinks=False: the sinks need the workspace (tests/test_reconcile_heal.py runs them)
    out = entry.main(db.resource, api.resource, kinds=["disputes"], schema=db.schema, heal_sinks=False)
    parts = out["render_all"]
    assert list(out) == ["render_all"] and "Reconciliation" in parts[0]["markdown"]
    assert len(parts[1]["table-row-object"]) == len(stream.final["disputes"])
    with pytest.raises(ValueError, match="api_key"):
        entry.main(db.resource, {"environment": "test_mode"}, schema=db.schema)


def test_a_state_that_comes_back_is_recorded_again(make_db, httpserver, stream):
    db = make_db()
    sub_id, sub = next((k, v) for k, v in stream.final["subscriptions"].items() if v["status"] == "active")
    objects = {"payments": {}, "subscriptions": {sub_id: dict(sub)}, "refunds": {}, "disputes": {}}
    api = DodoApi(httpserver, objects)
    with rec.client_from_resource(api.resource) as client:
        assert rec.reconcile(db.conn, client, kinds=("subscriptions",), now=AFTER_STREAM)["drift"][0]["action"] == \
            "recorded"
        held = dict(sub, status="on_hold")  # a webhook moves it on; the event back to active is lost
        record_delivery(db.conn, {"business_id": BUSINESS, "type": "subscription.on_hold",
                                  "timestamp": iso(AFTER_STREAM + timedelta(hours=1)), "data": held}, "msg_hold")
        result = rec.reconcile(db.conn, client, kinds=("subscriptions",), now=AFTER_STREAM + timedelta(days=1))
    assert [r["action"] for r in result["drift"]] == ["recorded"]
    assert db.conn.execute("SELECT status FROM subscriptions WHERE subscription_id = %s", [sub_id]).fetchone()[0] \
        == "active"


def many_payments(n: int, start: datetime, step: timedelta) -> dict:
    return {f"pay_{i:05d}": {"payment_id": f"pay_{i:05d}", "business_id": BUSINESS, "status": "succeeded",
                             "currency": "JPY", "total_amount": 1000, "created_at": iso(start + step * i),
                             "customer": None} for i in range(n)}


def test_a_history_deeper_than_the_page_cap_is_walked_in_created_at_windows(make_db, httpserver):
    """1,300 payments, 2.6 times what MAX_PAGES pages of one window reach: the listing
    splits its created_at window instead of paging past the API's cap."""
    payments = many_payments(1300, datetime(2026, 3, 1, tzinfo=timezone.utc), timedelta(minutes=7))
    api = DodoApi(httpserver, {"payments": payments, "subscriptions": {}, "refunds": {}, "disputes": {}},
                  max_page_number=4)  # pages 0..4: what MAX_PAGES (5) reads
    db = make_db()
    with rec.client_from_resource(api.resource) as client:
        result = rec.reconcile(db.conn, client, kinds=("payments",), full=True, dry_run=True, now=AFTER_STREAM)
    assert result["summary"][0]["listed"] == 1300
    assert sorted(r["id"] for r in result["drift"]) == sorted(payments)  # each once
    lists = [q for p, q in api.requests if p == "/payments"]
    assert all(int(q["page_number"]) < rec.MAX_PAGES for q in lists)
    assert len({(q["created_at_gte"], q["created_at_lte"]) for q in lists}) > 2  # several windows
    assert all("created_at_gte" in q and "created_at_lte" in q for q in lists)


def test_more_objects_in_one_instant_than_the_cap_reaches_is_a_clear_error(make_db, httpserver):
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    payments = many_payments(rec.MAX_PAGES * rec.PAGE_SIZE + 1, at, timedelta(0))
    api = DodoApi(httpserver, {"payments": payments, "subscriptions": {}, "refunds": {}, "disputes": {}},
                  max_page_number=4)  # pages 0..4: what MAX_PAGES (5) reads
    db = make_db()
    with rec.client_from_resource(api.resource) as client:
        with pytest.raises(rec.ListingError, match=r"more than 500 payments were created within one millisecond \(2026-02-28T23:59:59\.9"):
            rec.reconcile(db.conn, client, kinds=("payments",), full=True, dry_run=True, now=AFTER_STREAM)
    # Bounded: ~38 halvings from 2020 to a millisecond, each 5 full pages and an empty half.
    assert len(api.requests) < 300
