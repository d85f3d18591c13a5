"""What a normalised event means for the HubSpot contact, and the timeline note it leaves.

The contact's state properties (lifecycle, subscription, MRR, lifetime value, last
payment, open dispute) are the customer's current truth read from Postgres, which the
record step has already put in event-time order: a late, older event re-sends the newest
state instead of its own. Only without a database do they come from the event alone
(`contact_properties`), and then a late event can overwrite newer values. The timeline
note is per event. Every write is idempotent: the contact is upserted by email; the note
is created once per delivery (the ledger keeps its id; an attempt after an earlier one of
unknown outcome first searches HubSpot for the note's plain `dodo_event_id` property,
since notes cannot have a unique-value property to upsert on: see hubspot.py), so a
retried or replayed step converges to one contact and one note.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from collections.abc import Iterator  # not typing: see resources.py

from f.dodo.lib import db, ledger
from f.dodo.lib.errors import mark_permanent
from f.dodo.lib.hubspot import HubSpot
from f.dodo.lib.inert import html_escape
from f.dodo.lib.money import EXPONENTS, exponent, format_major

# Contacts <-> notes timeline: payments, refunds and disputes.
NOTE_CATEGORIES = {"payment", "refund", "dispute"}
_CHURNED = {"cancelled", "expired", "failed"}
_ACTIVE = {"active", "renewed", "unpaused", "plan_changed", "updated"}
_DISPUTE_OPEN = {"dispute.opened", "dispute.challenged"}
_DISPUTE_CLOSED = {"dispute.won", "dispute.lost", "dispute.accepted", "dispute.cancelled", "dispute.expired"}
# Months per billing interval, for MRR.
_MONTHS = {"day": Decimal(12) / Decimal(365), "week": Decimal(12) / Decimal(52),
           "month": Decimal(1), "year": Decimal(12)}


def epoch_ms(iso: str) -> str:
    """HubSpot datetime properties take epoch milliseconds (UTC)."""
    return str(int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000))


def money(minor, currency) -> str | None:
    if minor is None or not currency:
        return None
    return format_major(minor, currency)


def mrr(data: dict) -> str | None:
    """Monthly recurring revenue of a subscription payload, in exact major units."""
    amount, currency = data.get("recurring_pre_tax_amount"), data.get("currency")
    interval = str(data.get("payment_frequency_interval") or "").lower()
    count = data.get("payment_frequency_count") or 1
    if amount is None or not currency or interval not in _MONTHS:
        return None
    quantity = Decimal(data.get("quantity") or 1)
    per_month = Decimal(format_major(amount, currency)) * quantity / (_MONTHS[interval] * Decimal(count))
    quantum = Decimal(1).scaleb(-exponent(currency))
    return f"{per_month.quantize(quantum, ROUND_HALF_EVEN):f}"


def identity_properties(event: dict, name: str | None = None) -> dict[str, str]:
    """Who the contact is: email (the upsert key), Dodo customer id, first and last name."""
    props = {"email": event["customer_email"]}
    if event.get("customer_id"):
        props["dodo_customer_id"] = event["customer_id"]
    first, _, last = (name or event.get("customer_name") or "").strip().partition(" ")
    if first:
        props["firstname"] = first
    if last:
        props["lastname"] = last
    return props


def event_state(event: dict) -> dict[str, str]:
    """Fallback without a database: the state this one event implies.

    A late (older) event re-sends its own stale state here; only `customer_state`,
    read from Postgres, is immune to delivery order. No lifetime value (it needs history).
    """
    etype, data = event.get("event_type") or "", event.get("data") or {}
    props: dict[str, str] = {}
    if etype == "payment.succeeded":
        props |= {"dodo_lifecycle": "customer", "dodo_last_payment_date": epoch_ms(event["occurred_at"])}
        amount = money(event.get("amount_minor"), event.get("currency"))
        if amount is not None:
            props |= {"dodo_last_payment_amount": amount, "dodo_currency": event["currency"]}
    elif event.get("category") == "subscription":
        status = str(data.get("status") or etype.split(".")[-1])
        props["dodo_subscription_status"] = status
        if event.get("product_id"):
            props["dodo_product_id"] = event["product_id"]
        if status in _CHURNED or etype.split(".")[-1] in _CHURNED:
            props |= {"dodo_lifecycle": "churned", "dodo_mrr": "0"}
        elif status in _ACTIVE:
            props["dodo_lifecycle"] = "customer"
            if (value := mrr(data)) is not None:
                props |= {"dodo_mrr": value, "dodo_currency": str(data["currency"]).upper()}
    elif etype in _DISPUTE_OPEN:
        props["dodo_open_dispute"] = "true"
    elif etype in _DISPUTE_CLOSED:
        props["dodo_open_dispute"] = "false"
    return props


def contact_properties(event: dict) -> dict[str, str]:
    """The contact properties from the event alone (no database; see `event_state`)."""
    return identity_properties(event) | event_state(event)


# The customer's current truth. Postgres already resolved delivery order (each entity row
# holds its newest event), so reading it makes every sync, late ones included, send the
# same state. Values come back as text: money never passes through a float. The customer
# id is a constant so the planner pushes it into the views (a join or IN scans them whole).
_STATE_SQL = """
WITH subs AS (
    SELECT * FROM subscriptions WHERE customer_id = %(cid)s
), paid AS (
    SELECT payment_id, currency, total_minor, coalesce(created_at, event_at) AS paid_at
      FROM payments WHERE customer_id = %(cid)s AND status = 'succeeded'
)
SELECT
    (SELECT name FROM customers WHERE customer_id = %(cid)s) AS name,
    (SELECT ARRAY[status, product_id, upper(currency)] FROM subs   -- the subscription shown: live first
      ORDER BY status = 'active' DESC, status = ANY(%(live)s) DESC, event_at DESC, subscription_id LIMIT 1) AS sub,
    (SELECT count(*) FROM subs WHERE status = ANY(%(live)s)) AS live,
    (SELECT count(*) FROM subs WHERE status = ANY(%(ended)s)) AS ended,
    (SELECT ARRAY[floor(extract(epoch FROM paid_at) * 1000)::bigint::text, total_minor::text, upper(currency)]
       FROM paid ORDER BY paid_at DESC, payment_id DESC LIMIT 1) AS last_payment,
    (SELECT jsonb_object_agg(upper(currency), lifetime_value::text) FROM customer_lifetime_value
      WHERE customer_id = %(cid)s) AS ltv,
    (SELECT jsonb_object_agg(upper(currency), v) FROM (
        SELECT currency, round(sum(mrr_minor) / 10::numeric ^ currency_exponent(currency),
                               currency_exponent(currency))::text AS v
          FROM subscription_mrr WHERE customer_id = %(cid)s GROUP BY currency) x) AS mrr,
    EXISTS (SELECT 1 FROM disputes d WHERE d.status = ANY(%(open)s)
              AND (d.customer_id = %(cid)s
                   OR d.payment_id IN (SELECT payment_id FROM payments WHERE customer_id = %(cid)s))) AS open_dispute
"""
# Subscription statuses: still a customer (lifecycle "customer") / gone (lifecycle "churned").
_LIVE = ["active", "on_hold", "past_due", "paused"]
_ENDED = sorted(_CHURNED)
_OPEN_DISPUTES = ["dispute_opened", "dispute_challenged"]


def customer_state(conn, event: dict) -> tuple[dict[str, str], str | None]:
    """(state properties, name) of the event's customer (its customer id, else the newest
    customer with its email), from Postgres; ({}, None) when Postgres does not know them.

    Lifecycle: "customer" while a subscription is live (active, on_hold, past_due, paused),
    "churned" when every subscription ended (cancelled, expired, failed), "customer" with
    succeeded payments and no subscription. Subscription status and product: the active
    subscription (else the live one, else the newest). Money is per currency and never
    converted: MRR, lifetime value (net of refunds and lost disputes, as the view
    customer_lifetime_value) and last payment amount are in the customer's main currency,
    dodo_currency: that of their latest succeeded payment (else of the subscription shown).
    Figures in their other currencies stay in the revenue views.
    """
    cid = event.get("customer_id") or _customer_by_email(conn, event["customer_email"])
    if cid is None:
        return {}, None
    row = conn.execute(_STATE_SQL, {"cid": cid, "live": _LIVE, "ended": _ENDED,
                                    "open": _OPEN_DISPUTES}).fetchone()
    name, sub, live, ended, last, ltv, mrrs, open_dispute = row
    props = {"dodo_open_dispute": "true" if open_dispute else "false"}
    if live or (not ended and last):
        props["dodo_lifecycle"] = "customer"
    elif ended:
        props["dodo_lifecycle"] = "churned"
    if sub:
        props["dodo_subscription_status"] = sub[0]
        if sub[1]:
            props["dodo_product_id"] = sub[1]
    if last:
        props["dodo_last_payment_date"] = last[0]
        if last[1] is not None and last[2] in EXPONENTS:
            props["dodo_last_payment_amount"] = format_major(int(last[1]), last[2])
    currency = (last and last[2]) or (sub and sub[2])
    if currency in EXPONENTS:  # an unknown code has no true decimals: better no figure
        props |= {"dodo_currency": currency,
                  "dodo_mrr": (mrrs or {}).get(currency) or format_major(0, currency),
                  "dodo_lifetime_value": (ltv or {}).get(currency) or format_major(0, currency)}
    return props, name


def _customer_by_email(conn, email: str) -> str | None:
    """For an event that names no customer id: the newest customer with its email."""
    row = conn.execute("SELECT customer_id FROM customers WHERE lower(email) = lower(%s) "
                       "ORDER BY event_at DESC NULLS LAST LIMIT 1", (email,)).fetchone()
    return row and row[0]


@contextmanager
def contact_lock(conn, email: str) -> Iterator[None]:
    """Serialise the syncs of one contact for the block, so the last write to HubSpot is
    from the last read of Postgres (a late event cannot overtake a newer one).

    A session-level advisory lock: the ledger calls the send with no transaction open, so
    a transaction-scoped lock would end with its own statement. Always released; a session
    that died (a Postgres restart) took its locks with it.
    """
    key = "dodo-crm:" + email.lower()
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    try:
        yield
    finally:
        _unlock(conn, key)


def _unlock(conn, key: str) -> None:
    if conn.closed:
        return
    try:
        if conn.info.transaction_status == db.TX_INERROR:
            conn.rollback()  # a failed statement inside the block: the unlock must still run
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    except (db.OperationalError, db.InterfaceError):
        pass  # the connection died: its session, and the lock, are gone


def properties(conn, event: dict) -> dict[str, str]:
    """The contact properties to upsert: state from Postgres, or from the event without one."""
    if conn is None:
        return contact_properties(event)
    state, name = customer_state(conn, event)
    return identity_properties(event, name) | state


def note_id(event: dict) -> str:
    """The note's unique key: the delivery id, or the event's own identity for pasted events."""
    return event.get("webhook_id") or f"{event.get('event_type')}:{event.get('entity_id')}"


def note_body(event: dict) -> str:
    """HTML note body; every value is escaped (names and remarks come from customers)."""
    e = html_escape
    amount = money(event.get("amount_minor"), event.get("currency")) or event.get("amount")
    lines = [f"<strong>{e(str(event.get('event_type')))}</strong>"]
    if amount is not None:
        lines.append(f"Amount: {e(str(amount))} {e(str(event.get('currency') or ''))}")
    for label, key in (("ID", "entity_id"), ("Payment", "payment_id"), ("Status", "status")):
        if event.get(key):
            lines.append(f"{label}: {e(str(event[key]))}")
    data = event.get("data") or {}
    for label, key in (("Reason", "reason"), ("Remarks", "remarks")):
        if data.get(key):
            lines.append(f"{label}: {e(str(data[key])[:500])}")
    return "<p>" + "<br>".join(lines) + "</p>"


def sync_event(client: HubSpot, event: dict, props: dict[str, str] | None = None, *,
               search_first: bool = True) -> dict:
    """Upsert the contact (`props`, default: from the event alone), then (payments,
    refunds, disputes) the event's timeline note on it.

    `search_first`: look for the note by `dodo_event_id` before creating it. The ledger
    turns it off on a delivery's first attempt (nothing can exist yet; HubSpot's search
    API has its own, lower rate limit); without a ledger it stays on.
    """
    if not event.get("customer_email"):
        return {"status": "skipped", "reason": "event has no customer email"}
    contact = client.upsert("contacts", "email", event["customer_email"],
                            contact_properties(event) if props is None else props)
    result = {"status": "synced", "contact_id": contact["id"]}
    if event.get("category") in NOTE_CATEGORIES:
        key = note_id(event)
        found = client.find_note(key) if search_first else None
        if found is not None:
            # An earlier attempt created it, with its association (one call): kept as is.
            result |= {"note_id": found, "note": "found"}
        else:
            result["note_id"] = client.create_note({"dodo_event_id": key, "hs_timestamp": epoch_ms(
                event["occurred_at"]), "hs_note_body": note_body(event)}, contact["id"])
    return result


class SyncError(RuntimeError):
    """The CRM write failed after its retries (the ledger row says so and a replay retries it),
    or another worker is still sending it."""


def sync(conn, event: dict, client: HubSpot | None) -> dict:
    """Sync once per delivery (ledger sink "crm", channel "hubspot"); no client = local outbox.

    With a connection the contact's state is read from Postgres and written to HubSpot
    under the contact's lock (`contact_lock`); without one it comes from the event. Raises
    SyncError when the sync failed, or when another worker is still sending it (in_progress):
    the step fails and Windmill retries it later.
    """
    key = note_id(event)

    def send(attempt: int) -> dict:
        if not event.get("customer_email"):
            return {"status": "skipped", "external_id": "no customer email"}
        with nullcontext() if conn is None else contact_lock(conn, event["customer_email"]):
            props = properties(conn, event)
            if client is None:
                record = {"delivery": key, "contact": props}
                if event.get("category") in NOTE_CATEGORIES:
                    record["note"] = {"dodo_event_id": key, "hs_note_body": note_body(event)}
                return {"status": "skipped", "external_id": "outbox:" + ledger.to_outbox("hubspot", record)}
            # A first attempt cannot have created the note; a later one may have (its
            # outcome was lost with the step), so it searches before creating.
            done = sync_event(client, event, props, search_first=conn is None or attempt > 1)
        return {"status": "sent", "external_id": done["contact_id"], "detail": done}

    result = ledger.deliver_once(conn, key, "crm", "hubspot", send, with_attempt=True)
    if result["status"] == "failed":
        error = SyncError(result["error"])
        raise mark_permanent(error) if result.get("permanent") else error
    if result["status"] == "in_progress":
        raise SyncError(f"in progress: another worker is syncing delivery {key} to HubSpot "
                        "(its lease is live); retry later")
    return {"delivery": key, **result}
