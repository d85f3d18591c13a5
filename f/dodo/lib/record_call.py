"""The record step's argument: a normalised event as the call of the SQL function
`record_delivery(jsonb)` (migration v050; it calls `record_event(jsonb)`, migration v002).

Pure: no database driver, so the flow's preprocessor builds the call for every verified
delivery without importing psycopg2, and the record step is one native PostgreSQL
statement (f/dodo/record_delivery.pg.sql). f/dodo/lib/store.py sends the same call from
Python (UI runs, replays, the sink flow f/dodo/record) and the MySQL mirror reads its rows.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from f.dodo.lib import probe
from f.dodo.lib.errors import EventError, MalformedField, MissingField
from f.dodo.lib.event_types import category_of
from f.dodo.lib.money import EXPONENTS, format_major, parse_minor
from f.dodo.lib.migration_list import LATEST

STEP = "store_event"
ERROR_MAX = 2000

# -- field readers: tolerant where a value is informative, strict where it matters ----
def _str(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return None


def _req(d: dict, key: str, field: str | None = None) -> str:
    v = _str(d.get(key))
    if v is None or v == "":
        raise MissingField(field or f"data.{key}")
    return v


def _minor(d: dict, key: str) -> int | None:
    v = d.get(key)
    return None if v is None else parse_minor(v, f"data.{key}")


def _amount(d: dict, key: str) -> int | None:
    """A money amount that counts for or against revenue: a negative one (a refund of -500
    would raise net revenue above the payment) rejects the event."""
    v = _minor(d, key)
    if v is not None and v < 0:
        raise MalformedField(f"data.{key}", "must not be negative")
    return v


def _time(d: dict, key: str) -> str | None:
    v = d.get(key)
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None  # an informative timestamp we cannot read; the raw one stays in `data`


def _int(d: dict, key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**31 else None


def _bool(d: dict, key: str) -> bool | None:
    v = d.get(key)
    return v if isinstance(v, bool) else None


def _dec(d: dict, key: str) -> str | None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        return None
    try:
        n = Decimal(str(v).strip())
    except InvalidOperation:
        return None
    return str(n) if n.is_finite() else None


def _cur(d: dict, key: str = "currency") -> str | None:
    v = _str(d.get(key))
    return v.upper() if v else None


def _discount_multiplier(d: dict) -> str:
    """Product of the active percentage discounts (amount in basis points), exact."""
    m = Decimal(1)
    for disc in d.get("discounts") or []:
        if not isinstance(disc, dict) or str(disc.get("type", "")).lower() != "percentage":
            continue
        bps, left = disc.get("amount"), disc.get("cycles_remaining")
        if isinstance(bps, int) and not isinstance(bps, bool) and 0 <= bps <= 10000 and (left is None or left > 0):
            m *= 1 - Decimal(bps) / 10000
    return str(m)


# -- one row builder per category: (table, row, lock key) ------------------------------
def _payment(d: dict, ev: dict) -> tuple:
    pid = _req(d, "payment_id")
    row = dict(payment_id=pid, subscription_id=_str(d.get("subscription_id")), status=_str(d.get("status")),
               currency=_cur(d) or _cur(ev), total_minor=_amount(d, "total_amount"), tax_minor=_minor(d, "tax"),
               settlement_currency=_cur(d, "settlement_currency"), settlement_minor=_minor(d, "settlement_amount"),
               payment_method=_str(d.get("payment_method")), payment_method_type=_str(d.get("payment_method_type")),
               card_last_four=_str(d.get("card_last_four")), card_network=_str(d.get("card_network")),
               charge_type=_str(d.get("charge_type")), invoice_id=_str(d.get("invoice_id")),
               error_code=_str(d.get("error_code")), error_message=_str(d.get("error_message")),
               created_at=_time(d, "created_at"))
    if row["total_minor"] is None and ev.get("amount_minor") is not None:  # seed flat shapes
        row["total_minor"] = parse_minor(ev["amount_minor"], "amount_minor")
    return "payments", row, f"payment:{pid}"


def _refund(d: dict, ev: dict) -> tuple:
    pid = _req(d, "payment_id")
    row = dict(refund_id=_req(d, "refund_id"), payment_id=pid, status=_str(d.get("status")), currency=_cur(d),
               amount_minor=_amount(d, "amount"), is_partial=_bool(d, "is_partial"), reason=_str(d.get("reason")),
               created_at=_time(d, "created_at"))
    return "refunds", row, f"payment:{pid}"


def _dispute(d: dict, ev: dict) -> tuple:
    status = _str(d.get("dispute_status"))
    if status is None and ev.get("event_type", "").startswith("dispute."):
        status = "dispute_" + ev["event_type"].split(".", 1)[1]
    row = dict(dispute_id=_req(d, "dispute_id"), payment_id=_str(d.get("payment_id")), status=status,
               stage=_str(d.get("dispute_stage")), currency=_cur(d), amount_minor=_amount(d, "amount"),
               reason=_str(d.get("reason")), remarks=_str(d.get("remarks")), created_at=_time(d, "created_at"))
    return "disputes", row, None


def _subscription(d: dict, ev: dict) -> tuple:
    row = dict(subscription_id=_req(d, "subscription_id"), product_id=_str(d.get("product_id")),
               status=_str(d.get("status")), currency=_cur(d),
               recurring_pre_tax_minor=_minor(d, "recurring_pre_tax_amount"), quantity=_int(d, "quantity"),
               discount_multiplier=_discount_multiplier(d),
               payment_frequency_count=_int(d, "payment_frequency_count"),
               payment_frequency_interval=_str(d.get("payment_frequency_interval")),
               subscription_period_count=_int(d, "subscription_period_count"),
               subscription_period_interval=_str(d.get("subscription_period_interval")),
               trial_period_days=_int(d, "trial_period_days"), next_billing_date=_time(d, "next_billing_date"),
               previous_billing_date=_time(d, "previous_billing_date"),
               cancel_at_next_billing_date=_bool(d, "cancel_at_next_billing_date"),
               cancelled_at=_time(d, "cancelled_at"), created_at=_time(d, "created_at"))
    return "subscriptions", row, None


def _license_key(d: dict, ev: dict) -> tuple:
    row = dict(license_key_id=_req(d, "id"), key=_str(d.get("key")), product_id=_str(d.get("product_id")),
               payment_id=_str(d.get("payment_id")), subscription_id=_str(d.get("subscription_id")),
               status=_str(d.get("status")), activations_limit=_int(d, "activations_limit"),
               instances_count=_int(d, "instances_count"), expires_at=_time(d, "expires_at"),
               created_at=_time(d, "created_at"))
    return "license_keys", row, None


def _payout(d: dict, ev: dict) -> tuple:
    row = dict(payout_id=_req(d, "payout_id"), status=_str(d.get("status")), currency=_cur(d),
               amount_minor=_minor(d, "amount"), fee_minor=_minor(d, "fee"), tax_minor=_minor(d, "tax"),
               refunds_minor=_minor(d, "refunds"), chargebacks_minor=_minor(d, "chargebacks"),
               payment_method=_str(d.get("payment_method")), remarks=_str(d.get("remarks")),
               created_at=_time(d, "created_at"))
    return "payouts", row, None


def _credit(d: dict, ev: dict) -> tuple:
    if ev.get("event_type") == "credit.balance_low":  # an alert, not a ledger entry: inbox only
        return None, None, None
    row = dict(entry_id=_req(d, "id"), credit_entitlement_id=_str(d.get("credit_entitlement_id")),
               transaction_type=_str(d.get("transaction_type")), is_credit=_bool(d, "is_credit"),
               amount=_dec(d, "amount"), balance_before=_dec(d, "balance_before"),
               balance_after=_dec(d, "balance_after"), overage_before=_dec(d, "overage_before"),
               overage_after=_dec(d, "overage_after"), grant_id=_str(d.get("grant_id")),
               reference_id=_str(d.get("reference_id")), reference_type=_str(d.get("reference_type")),
               description=_str(d.get("description")), created_at=_time(d, "created_at"))
    return "credit_ledger_entries", row, None


def _checkout(d: dict, ev: dict) -> tuple:
    row = dict(payment_id=_req(d, "payment_id"), status=_str(d.get("status")),
               abandonment_reason=_str(d.get("abandonment_reason")), abandoned_at=_time(d, "abandoned_at"),
               recovered_payment_id=_str(d.get("recovered_payment_id")))
    return "abandoned_checkouts", row, None


def _dunning(d: dict, ev: dict) -> tuple:
    started = _time(d, "created_at")
    if started is None:
        raise MissingField("data.created_at", "missing or not a timestamp (it identifies the dunning run)")
    row = dict(subscription_id=_req(d, "subscription_id"), started_at=started,
               payment_id=_str(d.get("payment_id")), status=_str(d.get("status")),
               trigger_state=_str(d.get("trigger_state")))
    return "dunning", row, None


def _entitlement(d: dict, ev: dict) -> tuple:
    row = dict(grant_id=_req(d, "id"), entitlement_id=_str(d.get("entitlement_id")),
               integration_type=_str(d.get("integration_type")), status=_str(d.get("status")),
               payment_id=_str(d.get("payment_id")), subscription_id=_str(d.get("subscription_id")),
               delivered_at=_time(d, "delivered_at"), revoked_at=_time(d, "revoked_at"),
               revocation_reason=_str(d.get("revocation_reason")), error_code=_str(d.get("error_code")),
               error_message=_str(d.get("error_message")), created_at=_time(d, "created_at"))
    return "entitlement_grants", row, None


# Exact major-unit columns written beside their minor units: (major, minor, currency).
_AMOUNT = [("amount", "amount_minor", "currency")]
_MAJOR = {
    "payments": [("total", "total_minor", "currency"), ("tax", "tax_minor", "currency"),
                 ("settlement", "settlement_minor", "settlement_currency")],
    "refunds": _AMOUNT, "disputes": _AMOUNT, "payouts": _AMOUNT,
    "subscriptions": [("recurring_pre_tax", "recurring_pre_tax_minor", "currency")],
}


def _with_major(table: str, row: dict) -> dict:
    for major, minor, currency in _MAJOR.get(table, ()):
        try:
            row[major] = None if row[minor] is None else format_major(row[minor], row[currency])
        except EventError:  # unknown or missing currency: no major amount rather than a wrong one
            row[major] = None
    return row


_BUILDERS: dict[str, Callable[[dict, dict], tuple]] = {
    "payment": _payment, "refund": _refund, "dispute": _dispute, "subscription": _subscription,
    "license_key": _license_key, "payout": _payout, "credit": _credit, "checkout": _checkout,
    "dunning": _dunning, "entitlement": _entitlement,
}


def webhook_id_of(event: dict) -> str:
    """The inbox key: the webhook-id header, or for a pasted event a hash of its content."""
    wid = event.get("webhook_id")
    if isinstance(wid, str) and wid:
        return wid
    basis = json.dumps([event.get("event_type"), event.get("occurred_at"), event.get("data")],
                       sort_keys=True, default=str)
    return "manual_" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def delivery_of(event: dict) -> dict:
    """What was delivered, in the form the flows' `event` input takes again (replay):
    the envelope {business_id, type, timestamp, data}, or a seed transform's flat payload."""
    if event.get("source") == "seed_flat" and isinstance(event.get("data"), dict):
        return event["data"]
    return {"business_id": event.get("business_id"), "type": event.get("event_type"),
            "timestamp": event.get("occurred_at"), "data": event.get("data")}


def _customer(d: dict, ev: dict) -> tuple[dict | None, str | None]:
    """(described customer snapshot, or id of a customer only referenced)."""
    c = d.get("customer")
    if isinstance(c, dict) and _str(c.get("customer_id")):
        meta = c.get("metadata")
        return {"customer_id": _str(c["customer_id"]), "email": _str(c.get("email")), "name": _str(c.get("name")),
                "phone_number": _str(c.get("phone_number")), "metadata": meta if isinstance(meta, dict) else None}, None
    cid = _str(d.get("customer_id")) or _str(ev.get("customer_id"))
    if cid and (ev.get("customer_email") or ev.get("customer_name")) and ev.get("source") == "seed_flat":
        return {"customer_id": cid, "email": _str(ev.get("customer_email")), "name": _str(ev.get("customer_name")),
                "phone_number": None, "metadata": None}, None
    return None, cid


def _is_delivery(received: Any) -> bool:
    """A body as Dodo sent it, not a normalised event pasted into a UI run."""
    return isinstance(received, dict) and not ("category" in received and "occurred_at" in received)


def build_call(event: dict, received: dict | None = None) -> dict:
    """The argument of the SQL function record_event(jsonb) for a normalised event;
    `received` is the delivery as received (the verified body), kept as the inbox payload."""
    event_type = _str(event.get("event_type")) or "unknown"
    category = category_of(event_type)  # from the type, never the caller: an undocumented type changes nothing
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    call: dict[str, Any] = {
        "webhook_id": webhook_id_of(event), "event_type": event_type, "category": category,
        "business_id": _str(event.get("business_id")) or _str(data.get("business_id")),
        "entity_id": _str(event.get("entity_id")), "customer_id": _str(event.get("customer_id")),
        "occurred_at": None, "payload": received if _is_delivery(received) else delivery_of(event),
    }
    if event.get("source") == "seed_flat":  # the payload is not an envelope: say where data is
        call["data"] = data
    try:
        occurred = _time(event, "occurred_at")
        if occurred is None:
            raise MissingField("occurred_at", "missing or not a timestamp")
        call["occurred_at"] = occurred
        customer, ref = _customer(data, event)
        call["customer_id"] = call["customer_id"] or (customer or {}).get("customer_id") or ref
        if category == "unknown":
            return call
        if probe.is_probe(event):  # the self-test: the inbox row only (f/dodo/lib/probe.py)
            return dict(call, test=True)
        table, row, lock = _BUILDERS[category](data, event)
    except EventError as exc:
        return dict(call, error=str(exc)[:ERROR_MAX], step=STEP)
    if customer:
        call["customer"] = customer
    elif ref:
        call["customer_ref"] = ref
    if table:
        row.update(business_id=call["business_id"], customer_id=call["customer_id"])
        call.update(table=table, row=_with_major(table, row))
        if table == "payments" and row["currency"] in EXPONENTS:  # for refunded and net, in SQL
            call["unit"] = str(Decimal(1).scaleb(-EXPONENTS[row["currency"]]))
        call["entity_id"] = call["entity_id"] or next(iter(row.values()))
    if lock:
        call["lock"] = lock
    return call


def fast_path(envelope: dict, webhook_id: str | None, attempt: str) -> dict:
    """The entry flow's inputs that let its record step be one SQL statement, for a
    verified delivery: {"normalized": the event normalised with the pydantic models,
    "record": the call of record_delivery(jsonb), as JSON Postgres accepts}. Empty when
    the normaliser or the row builders reject the delivery: the flow's Python step then
    normalises and records it failed with its error, as for a run from the UI."""
    from f.dodo.lib.normalizer import normalize_event  # noqa: PLC0415 - the models: a verified delivery only

    try:
        normalized = normalize_event(envelope, webhook_id)
    except EventError:
        return {}
    call = build_call(normalized, envelope)
    if "error" in call:
        return {}
    return {"normalized": normalized, "record": for_record_delivery(call, attempt)}


def for_record_delivery(call: dict, attempt: str | None = None) -> dict:
    """`call` as record_delivery(jsonb) takes it: with `needs`, the schema version this code
    needs (the function refuses a schema behind it), and the run's delivery attempt, as
    JSON Postgres accepts (pg_json: a NUL or a lone surrogate becomes U+FFFD)."""
    from f.dodo.lib.inert import pg_json  # noqa: PLC0415 - a verified delivery only

    extra = {"needs": LATEST} | ({"attempt": attempt} if attempt else {})
    return json.loads(pg_json(call | extra))
