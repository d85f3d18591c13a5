"""What a normalised event means for the HubSpot contact, and the timeline note it leaves.

Every write is idempotent (contact upsert by email, note upsert by dodo_event_id, PUT
association), so a retried or replayed step converges to one contact and one note.
"""

from __future__ import annotations

import html
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from f.dodo.lib import ledger
from f.dodo.lib.channels import to_outbox
from f.dodo.lib.hubspot import HubSpot
from f.dodo.lib.money import exponent, format_major

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
    per_month = Decimal(format_major(amount, currency)) / (_MONTHS[interval] * Decimal(count))
    quantum = Decimal(1).scaleb(-exponent(currency))
    return f"{per_month.quantize(quantum, ROUND_HALF_EVEN):f}"


def contact_properties(event: dict, lifetime_value: str | None = None) -> dict[str, str]:
    """The contact properties this event sets (HubSpot takes every value as a string)."""
    etype, data = event.get("event_type") or "", event.get("data") or {}
    props = {"email": event["customer_email"]}
    if event.get("customer_id"):
        props["dodo_customer_id"] = event["customer_id"]
    first, _, last = (event.get("customer_name") or "").strip().partition(" ")
    if first:
        props["firstname"] = first
    if last:
        props["lastname"] = last
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
    if lifetime_value is not None:
        props["dodo_lifetime_value"] = str(Decimal(lifetime_value))
    return props


def note_id(event: dict) -> str:
    """The note's unique key: the delivery id, or the event's own identity for pasted events."""
    return event.get("webhook_id") or f"{event.get('event_type')}:{event.get('entity_id')}"


def note_body(event: dict) -> str:
    """HTML note body; every value is escaped (names and remarks come from customers)."""
    e = html.escape
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


def sync_event(client: HubSpot, event: dict, lifetime_value: str | None = None) -> dict:
    """Upsert the contact, then (payments, refunds, disputes) the timeline note on it."""
    if not event.get("customer_email"):
        return {"status": "skipped", "reason": "event has no customer email"}
    contact = client.upsert("contacts", "email", event["customer_email"],
                            contact_properties(event, lifetime_value))
    result = {"status": "synced", "contact_id": contact["id"]}
    if event.get("category") in NOTE_CATEGORIES:
        note = client.upsert("notes", "dodo_event_id", note_id(event), {
            "hs_timestamp": epoch_ms(event["occurred_at"]), "hs_note_body": note_body(event)})
        client.associate_default("notes", note["id"], "contacts", contact["id"])
        result["note_id"] = note["id"]
    return result


class SyncError(RuntimeError):
    """The CRM write failed after its retries; the ledger row says so and a replay retries it."""


def sync(conn, event: dict, client: HubSpot | None, lifetime_value: str | None = None) -> dict:
    """Sync once per delivery (ledger sink "crm", channel "hubspot"); no client = local outbox."""
    key = note_id(event)

    def send() -> dict:
        if not event.get("customer_email"):
            return {"status": "skipped", "external_id": "no customer email"}
        if client is None:
            record = {"delivery": key, "contact": contact_properties(event, lifetime_value)}
            if event.get("category") in NOTE_CATEGORIES:
                record["note"] = {"dodo_event_id": key, "hs_note_body": note_body(event)}
            return {"status": "skipped", "external_id": "outbox:" + to_outbox("hubspot", record)}
        done = sync_event(client, event, lifetime_value)
        return {"status": "sent", "external_id": done["contact_id"], "detail": done}

    result = ledger.deliver_once(conn, key, "crm", "hubspot", send)
    if result["status"] == "failed":
        raise SyncError(result["error"])
    return {"delivery": key, **result}
