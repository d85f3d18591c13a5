"""CRM contact state from Postgres: delivery order does not matter, lifetime value is exact.

Each delivery goes the way the entry flow sends it: normalised, recorded in a real
Postgres schema (`db` fixture), then synced to a pytest-httpserver stand-in of HubSpot
that keeps the contact's properties as HubSpot would (each upsert updates the sent ones).
"""

import copy
import functools
import threading
from datetime import datetime
from decimal import Decimal

import pytest
from werkzeug import Response

from f.dodo.lib import crm, ledger, store
from f.dodo.lib.hubspot import HubSpot
from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import envelope
from tests.test_hubspot import TOKEN, HubSpotStandIn

EMAIL = "ana.souza@example.com"  # the fixtures' customer


@pytest.fixture
def hub(httpserver):
    return HubSpotStandIn(httpserver)


@pytest.fixture
def client(httpserver):
    c = HubSpot(TOKEN, httpserver.url_for(""), sleep=lambda s: None)
    yield c
    c.close()


def event(name: str, msg: str, at: str | None = None, **data) -> dict:
    """The fixture delivery `name` with its own webhook id, event time and data fields."""
    env = copy.deepcopy(envelope(name))
    env["timestamp"] = at or env["timestamp"]
    env["data"].update(data)
    return normalize_event(env, msg)


def deliver(conn, client, ev: dict) -> dict:
    """What the entry flow does: record, then the CRM step."""
    assert store.record_event(conn, ev)["status"] == "recorded"
    return crm.sync(conn, ev, client)


def contact(hub) -> dict:
    return hub.records["contacts"][EMAIL]["properties"]


# --- Ordering ---------------------------------------------------------------------------

ACTIVE_AT, CANCELLED_AT = "2026-03-02T10:28:00Z", "2026-03-02T10:34:00Z"


def test_late_active_after_cancelled_leaves_the_contact_churned(db, hub, client):
    cancelled = event("subscription.cancelled", "msg_cancel", CANCELLED_AT)
    late_active = event("subscription.active", "msg_active", ACTIVE_AT)  # older, delivered last
    deliver(db.conn, client, cancelled)
    assert contact(hub)["dodo_lifecycle"] == "churned"
    result = deliver(db.conn, client, late_active)

    assert result["status"] == "sent" and hub.applied == 2  # the late event was synced too
    props = contact(hub)
    assert props["dodo_lifecycle"] == "churned" and props["dodo_subscription_status"] == "cancelled"
    assert props["dodo_mrr"] == "0.00" and props["dodo_currency"] == "USD"
    assert props["dodo_product_id"] == "pdt_7YtRe3WqA9sDf5GhJk2Lz"
    # What the event alone says (the no-database fallback): the stale state this avoids.
    assert crm.contact_properties(late_active)["dodo_lifecycle"] == "customer"
    assert [r["status"] for r in ledger.rows(db.conn, "msg_active")] == ["sent"]


def test_in_order_active_then_cancelled(db, hub, client):
    deliver(db.conn, client, event("subscription.active", "msg_active", ACTIVE_AT))
    active = dict(contact(hub))
    deliver(db.conn, client, event("subscription.cancelled", "msg_cancel", CANCELLED_AT))
    assert active["dodo_lifecycle"] == "customer" and active["dodo_subscription_status"] == "active"
    assert active["dodo_mrr"] == "15.00"  # 1500 cents a month
    assert contact(hub)["dodo_lifecycle"] == "churned" and contact(hub)["dodo_mrr"] == "0.00"


def test_late_payment_and_dispute_events_keep_the_newest_state(db, hub, client):
    newer = event("payment.succeeded", "msg_pay_new", "2026-03-05T09:00:00Z", payment_id="pay_new",
                  total_amount=5000, created_at="2026-03-05T09:00:00Z")
    older = event("payment.succeeded", "msg_pay_old", "2026-03-01T09:00:00Z", payment_id="pay_old",
                  total_amount=2999, created_at="2026-03-01T09:00:00Z")
    won = event("dispute.won", "msg_won", "2026-03-06T09:00:00Z", payment_id="pay_new")
    opened = event("dispute.opened", "msg_opened", "2026-03-05T12:00:00Z", payment_id="pay_new")
    for ev in (newer, won, older, opened):  # both older events arrive last
        deliver(db.conn, client, ev)

    props = contact(hub)
    assert props["dodo_last_payment_amount"] == "50.00"
    assert props["dodo_last_payment_date"] == str(int(datetime.fromisoformat("2026-03-05T09:00:00+00:00")
                                                      .timestamp()) * 1000)
    assert props["dodo_open_dispute"] == "false" and props["dodo_lifecycle"] == "customer"
    # Each event still leaves its own timeline note, once.
    assert set(hub.records["notes"]) == {"msg_pay_new", "msg_pay_old", "msg_won", "msg_opened"}


def test_a_sync_waits_for_the_contacts_lock_then_reads_the_newest_state(db, hub, client, httpserver):
    """The read and the HubSpot write happen under a per-contact lock: a sync that started
    before a newer event was recorded cannot overwrite the newer sync's write."""
    late_active = event("subscription.active", "msg_active", ACTIVE_AT)
    store.record_event(db.conn, late_active)
    result: dict = {}
    with db.connect() as holder, db.connect() as worker:
        with crm.contact_lock(holder, EMAIL):  # a concurrent sync of the same contact, mid-write
            thread = threading.Thread(target=lambda: result.update(crm.sync(worker, late_active, client)))
            thread.start()
            _wait_until_blocked(holder, worker.info.backend_pid, thread)
            assert hub.applied == 0  # blocked before reading and writing
            store.record_event(db.conn, event("subscription.cancelled", "msg_cancel", CANCELLED_AT))
        thread.join()
    assert result["status"] == "sent"
    assert contact(hub)["dodo_lifecycle"] == "churned"  # read after the newer event was recorded


def test_two_syncs_of_one_contact_run_one_after_the_other(db, hub, client, monkeypatch):
    """A sync slowed inside its HubSpot write keeps the contact locked: a concurrent sync of a
    newer event reads Postgres only after that write completed, so its newer state lands last."""
    log: list[tuple[str, str]] = []
    inside, release = threading.Event(), threading.Event()
    read, write = crm.customer_state, crm.sync_event

    def logged_read(conn, ev):
        log.append(("read", ev["webhook_id"]))
        return read(conn, ev)

    def slow_write(client, ev, props=None, **kw):
        if ev["webhook_id"] == "msg_active":
            inside.set()
            assert release.wait(120)  # a bound against a hang, not a duration under test
        done = write(client, ev, props, **kw)
        log.append(("wrote", ev["webhook_id"]))
        return done

    monkeypatch.setattr(crm, "customer_state", logged_read)
    monkeypatch.setattr(crm, "sync_event", slow_write)
    late_active = event("subscription.active", "msg_active", ACTIVE_AT)
    cancelled = event("subscription.cancelled", "msg_cancel", CANCELLED_AT)
    store.record_event(db.conn, late_active)
    results: dict = {}
    with db.connect() as first, db.connect() as second:
        a = threading.Thread(target=lambda: results.update(a=crm.sync(first, late_active, client)))
        a.start()
        assert inside.wait(120)  # the first sync read the old state and is inside HubSpot
        store.record_event(db.conn, cancelled)
        b = threading.Thread(target=lambda: results.update(b=crm.sync(second, cancelled, client)))
        b.start()
        try:
            _wait_until_blocked(db.conn, second.info.backend_pid, b)
            assert log == [("read", "msg_active")]  # the second has not read yet
        finally:
            release.set()
            a.join()
            b.join()
        assert _advisory_locks(db.conn, first.info.backend_pid, second.info.backend_pid) == 0
    assert results["a"]["status"] == results["b"]["status"] == "sent"
    assert log == [("read", "msg_active"), ("wrote", "msg_active"), ("read", "msg_cancel"), ("wrote", "msg_cancel")]
    assert contact(hub)["dodo_lifecycle"] == "churned"  # the newer state was written last


def test_the_contact_lock_is_released_when_the_write_fails(db, hub, client):
    hub.fail_next += [Response("bad", status=400)]
    with db.connect() as worker:
        with pytest.raises(crm.SyncError):
            deliver(worker, client, event("subscription.active", "msg_active", ACTIVE_AT))
        assert _advisory_locks(db.conn, worker.info.backend_pid) == 0
    assert [r["status"] for r in ledger.rows(db.conn, "msg_active")] == ["failed"]


def test_a_connection_lost_inside_the_write_releases_the_lock_and_the_sync_is_recorded(db, hub, client,
                                                                                        monkeypatch):
    """Postgres drops the worker's session mid-write: its lock goes with it, the unlock is
    skipped without an error, and the ledger records the sent write on a new connection."""
    write = crm.sync_event
    with db.connect() as worker:
        pid = worker.info.backend_pid

        def write_after_kill(client, ev, props=None, **kw):
            db.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            return write(client, ev, props, **kw)

        monkeypatch.setattr(crm, "sync_event", write_after_kill)
        result = deliver(worker, client, event("subscription.active", "msg_active", ACTIVE_AT))
    assert result["status"] == "sent" and hub.applied == 1
    assert [r["status"] for r in ledger.rows(db.conn, "msg_active")] == ["sent"]
    assert _advisory_locks(db.conn, pid) == 0


def test_a_sync_another_worker_is_sending_fails_the_step(db, hub, client, monkeypatch):
    """in_progress (another worker's live lease) is not a success: the step fails, to be
    retried by Windmill once the other worker recorded its outcome."""
    monkeypatch.setattr(ledger, "deliver_once", functools.partial(ledger.deliver_once, wait=0))
    active = event("subscription.active", "msg_active", ACTIVE_AT)
    store.record_event(db.conn, active)
    db.conn.execute("INSERT INTO delivery_ledger (webhook_id, sink, channel, status, attempts, claim, claimed_at, "
                    "lease_until) VALUES ('msg_active', 'crm', 'hubspot', 'sending', 1, 'another-worker', now(), "
                    "now() + interval '1 hour')")
    with pytest.raises(crm.SyncError, match=r"^in progress: another worker is syncing delivery msg_active"):
        crm.sync(db.conn, active, client)
    assert hub.applied == 0


def _advisory_locks(conn, *pids: int) -> int:
    return conn.execute("SELECT count(*) FROM pg_locks WHERE pid = ANY(%s) AND locktype = 'advisory'",
                        (list(pids),)).fetchone()[0]


def _wait_until_blocked(conn, pid: int, thread: threading.Thread) -> None:
    """Until the session `pid` waits for an advisory lock; fails if its sync ends instead."""
    for _ in range(20_000):  # a condition, not a duration: pg_locks says when it waits
        waiting = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' "
                               "AND NOT granted", (pid,)).fetchone()[0]
        if waiting:
            return
        if not thread.is_alive():
            raise AssertionError("the sync ran to its end without waiting for the contact's lock")
        threading.Event().wait(0.005)
    raise AssertionError("the sync never waited for the contact's lock")


# --- Lifetime value -----------------------------------------------------------------------

EXPONENT = {"USD": 2, "KWD": 3}  # ISO 4217, written out here independently of f.dodo.lib.money


def major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-EXPONENT[currency])


def history(last_currency: str) -> list[dict]:
    """A customer's payments, refunds and disputes in two currencies, as raw fields."""
    other = "KWD" if last_currency == "USD" else "USD"
    return [
        {"kind": "payment", "id": "pay_a", "status": "succeeded", "minor": 2999, "cur": "USD", "day": 1},
        {"kind": "payment", "id": "pay_b", "status": "succeeded", "minor": 5000, "cur": "USD", "day": 2},
        {"kind": "payment", "id": "pay_c", "status": "succeeded", "minor": 4999, "cur": "USD", "day": 3},
        {"kind": "payment", "id": "pay_d", "status": "failed", "minor": 7000, "cur": "USD", "day": 4},
        {"kind": "payment", "id": "pay_k", "status": "succeeded", "minor": 12345, "cur": "KWD", "day": 5},
        {"kind": "payment", "id": "pay_k2", "status": "succeeded", "minor": 1500, "cur": "KWD", "day": 6},
        {"kind": "refund", "id": "ref_1", "payment": "pay_b", "status": "succeeded", "minor": 1000, "cur": "USD", "day": 7},
        {"kind": "refund", "id": "ref_2", "payment": "pay_a", "status": "failed", "minor": 500, "cur": "USD", "day": 7},
        {"kind": "refund", "id": "ref_3", "payment": "pay_k", "status": "succeeded", "minor": 345, "cur": "KWD", "day": 8},
        {"kind": "dispute", "id": "dsp_1", "payment": "pay_c", "status": "lost", "minor": 4999, "cur": "USD", "day": 9},
        {"kind": "dispute", "id": "dsp_2", "payment": "pay_a", "status": "won", "minor": 2999, "cur": "USD", "day": 9},
        # The latest succeeded payment sets the main currency.
        {"kind": "payment", "id": "pay_last", "status": "succeeded", "minor": 2000, "cur": last_currency, "day": 20},
        {"kind": "payment", "id": "pay_prev", "status": "succeeded", "minor": 1000, "cur": other, "day": 19},
    ]


def to_event(item: dict, n: int) -> dict:
    at = f"2026-03-{item['day']:02d}T10:00:{n:02d}Z"
    if item["kind"] == "payment":
        return event(f"payment.{item['status']}", f"msg_{n}", at, payment_id=item["id"], status=item["status"],
                     total_amount=item["minor"], currency=item["cur"], created_at=at)
    if item["kind"] == "refund":
        return event(f"refund.{item['status']}", f"msg_{n}", at, refund_id=item["id"], payment_id=item["payment"],
                     status=item["status"], amount=item["minor"], currency=item["cur"], created_at=at)
    return event(f"dispute.{item['status']}", f"msg_{n}", at, dispute_id=item["id"], payment_id=item["payment"],
                 dispute_status=f"dispute_{item['status']}", amount=str(item["minor"]), currency=item["cur"],
                 created_at=at)


def expected_lifetime_value(items: list[dict], currency: str) -> str:
    """Succeeded payments minus succeeded refunds minus lost disputes, in `currency` only."""
    mine = [i for i in items if i["cur"] == currency]
    total = (sum(major(i["minor"], currency) for i in mine if i["kind"] == "payment" and i["status"] == "succeeded")
             - sum(major(i["minor"], currency) for i in mine if i["kind"] == "refund" and i["status"] == "succeeded")
             - sum(major(i["minor"], currency) for i in mine if i["kind"] == "dispute" and i["status"] == "lost"))
    return f"{total.quantize(Decimal(1).scaleb(-EXPONENT[currency])):f}"


@pytest.mark.parametrize("main_currency", ["USD", "KWD"])
def test_lifetime_value_is_the_main_currencys_net_revenue(db, hub, client, main_currency):
    items = history(main_currency)
    events = [to_event(item, n) for n, item in enumerate(items)]
    for ev in reversed(events):  # newest first: the last sync is the oldest event's
        deliver(db.conn, client, ev)

    props = contact(hub)
    expected = expected_lifetime_value(items, main_currency)
    assert props["dodo_currency"] == main_currency
    assert props["dodo_lifetime_value"] == expected
    assert expected == {"USD": "89.99", "KWD": "15.500"}[main_currency]  # the figures by hand
    assert props["dodo_last_payment_amount"] == f"{major(2000, main_currency):f}"
    assert props["dodo_mrr"] == f"{major(0, main_currency):f}"  # no subscription
    assert props["dodo_open_dispute"] == "false" and props["dodo_lifecycle"] == "customer"


def test_a_zero_decimal_currency_is_written_without_decimals(db, hub, client):
    """Literals, not the bundle's formatter: 1000 JPY is "1000", less a 100 JPY refund "900"."""
    items = [{"kind": "payment", "id": "pay_j", "status": "succeeded", "minor": 1000, "cur": "JPY", "day": 1},
             {"kind": "refund", "id": "ref_j", "payment": "pay_j", "status": "succeeded", "minor": 100, "cur": "JPY",
              "day": 2}]
    for n, item in enumerate(items):
        deliver(db.conn, client, to_event(item, n))
    props = contact(hub)
    assert (props["dodo_currency"], props["dodo_lifetime_value"], props["dodo_last_payment_amount"]) == \
        ("JPY", "900", "1000")


def test_lifetime_value_with_subscription_mrr(db, hub, client):
    deliver(db.conn, client, event("subscription.active", "msg_active", ACTIVE_AT))
    deliver(db.conn, client, event("payment.succeeded", "msg_pay", "2026-03-02T10:15:00Z"))
    props = contact(hub)
    assert props["dodo_lifetime_value"] == "29.99" and props["dodo_mrr"] == "15.00"
    assert props["dodo_subscription_status"] == "active" and props["dodo_lifecycle"] == "customer"


def test_without_a_database_the_state_comes_from_the_event(hub, client):
    crm.sync(None, event("subscription.active", "msg_active", ACTIVE_AT), client)
    props = contact(hub)
    assert props["dodo_lifecycle"] == "customer" and props["dodo_mrr"] == "15.00"
    assert "dodo_lifetime_value" not in props and "dodo_open_dispute" not in props


def test_an_event_without_customer_id_finds_the_customer_by_email(db, hub, client):
    store.record_event(db.conn, event("payment.succeeded", "msg_pay", "2026-03-02T10:15:00Z"))
    pasted = event("license_key.created", "msg_key") | {"customer_id": None, "customer_email": EMAIL.upper()}
    assert crm.sync(db.conn, pasted, client)["status"] == "sent"
    props = hub.records["contacts"][EMAIL.upper()]["properties"]
    assert props["dodo_lifetime_value"] == "29.99" and props["dodo_lifecycle"] == "customer"
    assert "dodo_customer_id" not in props
