"""One normalised shape for every Dodo event (docs/internals.md, "The normalised event").

`flat` reproduces the seed's dashboard transforms (payment.succeeded,
subscription.active/cancelled, dispute.*) key for key, with JavaScript's semantics for
absent fields (the key is dropped, as JSON.stringify drops undefined) and `||`
defaults, except that amounts use the currency's true decimals.
"""

from __future__ import annotations  # the `ev.Payment` hints below must not define every model

from datetime import timezone
from decimal import Decimal
from typing import Any, Optional

from f.dodo.lib import events as ev
from f.dodo.lib.errors import MalformedField
from f.dodo.lib.money import EXPONENTS, format_major

# Entity id keys present (maybe None) in every normalised event.
ID_KEYS = (
    "payment_id", "subscription_id", "refund_id", "dispute_id", "product_id", "license_key_id",
    "payout_id", "credit_entitlement_id", "credit_entry_id", "entitlement_id", "entitlement_grant_id",
)

_ABSENT = object()  # JavaScript's undefined


def normalize_event(event: dict, webhook_id: Optional[str] = None) -> dict:
    """The normalised event of a Dodo envelope or of a seed transform's flat payload."""
    if not isinstance(event, dict):
        raise MalformedField("event", "must be a JSON object")
    if webhook_id == "":
        webhook_id = None
    if webhook_id is not None and (not isinstance(webhook_id, str) or len(webhook_id) > 255):
        raise MalformedField("webhook_id", "must be a string of at most 255 characters")
    if "type" not in event and "data" not in event and "event_type" in event:
        out = _from_seed_flat(event)
    else:
        out = _from_envelope(event)
    out["webhook_id"] = webhook_id
    return out


# --- envelopes ---------------------------------------------------------------


def _from_envelope(event: dict) -> dict:
    env = ev.parse_event(event)
    raw = env.data if isinstance(env.data, dict) else {}
    builder = _BUILDERS.get(type(env.payload).__name__, _unknown)  # NoneType: an unknown type
    fields, flat = builder(env.type, env.payload, raw, event)
    business_id = env.business_id or _str(raw.get("business_id"))
    return _event(env.type, env.category, "envelope", business_id, _iso(env.timestamp, "timestamp"),
                  fields, env.data, flat)


def _event(event_type, category, source, business_id, occurred_at, fields, data, flat) -> dict:
    out = {
        "event_type": event_type, "category": category, "webhook_id": None, "business_id": business_id,
        "occurred_at": occurred_at, "source": source, "entity_id": None,
        "customer_id": None, "customer_email": None, "customer_name": None,
        "amount": None, "amount_minor": None, "currency": None, "status": None,
        **dict.fromkeys(ID_KEYS),
    }
    out.update(fields)
    out["data"] = data
    out["flat"] = flat
    return out


def _payment(t, p: ev.Payment, raw, event):
    cart = p.product_cart or []
    first = cart[0] if cart and isinstance(cart[0], dict) else {}
    fields = {
        "entity_id": p.payment_id, "payment_id": p.payment_id, "subscription_id": p.subscription_id,
        "product_id": p.product_id or _str(first.get("product_id")), "status": p.status,
        **_customer(p.customer), **_money(p.total_amount, p.currency),
    }
    currency = _or(_js(raw, "currency"), "USD")
    flat = _obj(
        event_type=t,
        payment_id=_js(raw, "payment_id"),
        amount=_fmt(p.total_amount, p.currency or "USD"),
        currency=currency,
        customer_email=_js(raw, "customer", "email"),
        customer_name=_js(raw, "customer", "name"),
        payment_method=_or(_js(raw, "payment_method"), "unknown"),
        timestamp=_js(event, "timestamp"),
        metadata=_obj(business_id=_js(raw, "business_id"), product_id=_js(raw, "product_id")),
    )
    if t != "payment.succeeded":  # beyond the seed: why a payment did not succeed
        flat.update(_obj(status=_js(raw, "status"), error_code=_js(raw, "error_code"),
                         error_message=_js(raw, "error_message")))
    return fields, flat


def _subscription(t, s: ev.Subscription, raw, event):
    fields = {
        "entity_id": s.subscription_id, "subscription_id": s.subscription_id, "product_id": s.product_id,
        "payment_id": s.payment_id, "status": s.status, **_customer(s.customer),
        **_money(s.recurring_pre_tax_amount, s.currency),
    }
    common = dict(subscription_id=_js(raw, "subscription_id"), customer_email=_js(raw, "customer", "email"))
    if t == "subscription.active":
        flat = _obj(
            event_type="subscription_started", **common,
            customer_name=_js(raw, "customer", "name"), product_id=_js(raw, "product_id"),
            amount=_fmt(s.recurring_pre_tax_amount, s.currency),
            frequency=_js(raw, "payment_frequency_interval"), next_billing=_js(raw, "next_billing_date"),
            customer_id=_js(raw, "customer", "customer_id"), timestamp=_js(event, "timestamp"),
        )
    elif t == "subscription.cancelled":
        flat = _obj(
            event_type="subscription_cancelled", **common,
            cancelled_at=_js(raw, "cancelled_at"), cancel_at_next_billing=_js(raw, "cancel_at_next_billing_date"),
            customer_id=_js(raw, "customer", "customer_id"), timestamp=_js(event, "timestamp"),
        )
    else:
        flat = _obj(
            event_type=t, **common, customer_name=_js(raw, "customer", "name"),
            customer_id=_js(raw, "customer", "customer_id"), product_id=_js(raw, "product_id"),
            status=_js(raw, "status"), amount=_fmt(s.recurring_pre_tax_amount, s.currency),
            currency=_js(raw, "currency"), frequency=_js(raw, "payment_frequency_interval"),
            next_billing=_js(raw, "next_billing_date"), cancel_at_next_billing=_js(raw, "cancel_at_next_billing_date"),
            cancelled_at=_js(raw, "cancelled_at"), payment_id=_js(raw, "payment_id"),
            timestamp=_js(event, "timestamp"),
        )
    return fields, flat


def _dispute(t, d: ev.Dispute, raw, event):
    fields = {
        "entity_id": d.dispute_id, "dispute_id": d.dispute_id, "payment_id": d.payment_id,
        "status": d.dispute_status, **_customer(d.customer), **_money(d.amount, d.currency),
    }
    flat = _obj(
        event_type=t,
        dispute_id=_js(raw, "dispute_id"),
        payment_id=_js(raw, "payment_id"),
        amount=_fmt(d.amount, d.currency),
        status=_js(raw, "dispute_status"),
        stage=_js(raw, "dispute_stage"),
        remarks=_or(_js(raw, "remarks"), ""),
        urgent=t == "dispute.opened",
        business_id=_js(raw, "business_id"),
        timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _refund(t, r: ev.Refund, raw, event):
    fields = {
        "entity_id": r.refund_id, "refund_id": r.refund_id, "payment_id": r.payment_id, "status": r.status,
        **_customer(r.customer), **_money(r.amount, r.currency),
    }
    flat = _obj(
        event_type=t, refund_id=_js(raw, "refund_id"), payment_id=_js(raw, "payment_id"),
        amount=_fmt(r.amount, r.currency), currency=_js(raw, "currency"), status=_js(raw, "status"),
        is_partial=_js(raw, "is_partial"), reason=_or(_js(raw, "reason"), ""),
        customer_email=_js(raw, "customer", "email"), customer_name=_js(raw, "customer", "name"),
        customer_id=_js(raw, "customer", "customer_id"), business_id=_js(raw, "business_id"),
        timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _license_key(t, k: ev.LicenseKey, raw, event):
    fields = {
        "entity_id": k.id, "license_key_id": k.id, "customer_id": k.customer_id, "product_id": k.product_id,
        "payment_id": k.payment_id, "subscription_id": k.subscription_id, "status": k.status,
    }
    # The key itself stays in `data`: flat views travel to CRMs and chat channels.
    flat = _obj(
        event_type=t, license_key_id=_js(raw, "id"), status=_js(raw, "status"),
        customer_id=_js(raw, "customer_id"), product_id=_js(raw, "product_id"),
        payment_id=_js(raw, "payment_id"), subscription_id=_js(raw, "subscription_id"),
        activations_limit=_js(raw, "activations_limit"), instances_count=_js(raw, "instances_count"),
        expires_at=_js(raw, "expires_at"), business_id=_js(raw, "business_id"), timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _payout(t, p: ev.Payout, raw, event):
    fields = {"entity_id": p.payout_id, "payout_id": p.payout_id, "status": p.status, **_money(p.amount, p.currency)}
    flat = _obj(
        event_type=t, payout_id=_js(raw, "payout_id"), amount=_fmt(p.amount, p.currency),
        currency=_js(raw, "currency"), status=_js(raw, "status"), fee=_fmt(p.fee, p.currency),
        tax=_fmt(p.tax, p.currency), refunds=_fmt(p.refunds, p.currency),
        chargebacks=_fmt(p.chargebacks, p.currency), payment_method=_js(raw, "payment_method"),
        remarks=_or(_js(raw, "remarks"), ""), business_id=_js(raw, "business_id"),
        timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _credit(t, c: ev.CreditLedgerEntry, raw, event):
    fields = {
        "entity_id": c.id, "credit_entry_id": c.id, "credit_entitlement_id": c.credit_entitlement_id,
        "customer_id": c.customer_id,
    }
    flat = _obj(
        event_type=t, credit_entry_id=_js(raw, "id"), credit_entitlement_id=_js(raw, "credit_entitlement_id"),
        customer_id=_js(raw, "customer_id"), transaction_type=_js(raw, "transaction_type"),
        credits=_js(raw, "amount"), is_credit=_js(raw, "is_credit"),
        balance_before=_js(raw, "balance_before"), balance_after=_js(raw, "balance_after"),
        overage_before=_js(raw, "overage_before"), overage_after=_js(raw, "overage_after"),
        description=_or(_js(raw, "description"), ""), business_id=_js(raw, "business_id"),
        timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _credit_low(t, c: ev.CreditBalanceLow, raw, event):
    fields = {
        "entity_id": c.credit_entitlement_id, "credit_entitlement_id": c.credit_entitlement_id,
        "customer_id": c.customer_id, "subscription_id": c.subscription_id,
    }
    flat = _obj(
        event_type=t, credit_entitlement_id=_js(raw, "credit_entitlement_id"),
        credit_entitlement_name=_js(raw, "credit_entitlement_name"), customer_id=_js(raw, "customer_id"),
        subscription_id=_js(raw, "subscription_id"), available_balance=_js(raw, "available_balance"),
        threshold_amount=_js(raw, "threshold_amount"), threshold_percent=_js(raw, "threshold_percent"),
        business_id=_js(event, "business_id"), timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _checkout(t, a: ev.AbandonedCheckout, raw, event):
    fields = {"entity_id": a.payment_id, "payment_id": a.payment_id, "customer_id": a.customer_id, "status": a.status}
    flat = _obj(
        event_type=t, payment_id=_js(raw, "payment_id"), customer_id=_js(raw, "customer_id"),
        status=_js(raw, "status"), reason=_js(raw, "abandonment_reason"), abandoned_at=_js(raw, "abandoned_at"),
        recovered_payment_id=_js(raw, "recovered_payment_id"), business_id=_js(event, "business_id"),
        timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _dunning(t, d: ev.Dunning, raw, event):
    fields = {
        "entity_id": d.subscription_id, "subscription_id": d.subscription_id, "payment_id": d.payment_id,
        "customer_id": d.customer_id, "status": d.status,
    }
    flat = _obj(
        event_type=t, subscription_id=_js(raw, "subscription_id"), customer_id=_js(raw, "customer_id"),
        payment_id=_js(raw, "payment_id"), status=_js(raw, "status"), trigger_state=_js(raw, "trigger_state"),
        business_id=_js(event, "business_id"), timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _entitlement(t, g: ev.EntitlementGrant, raw, event):
    fields = {
        "entity_id": g.id, "entitlement_grant_id": g.id, "entitlement_id": g.entitlement_id,
        "customer_id": g.customer_id, "payment_id": g.payment_id, "subscription_id": g.subscription_id,
        "status": g.status,
    }
    flat = _obj(
        event_type=t, entitlement_grant_id=_js(raw, "id"), entitlement_id=_js(raw, "entitlement_id"),
        customer_id=_js(raw, "customer_id"), integration_type=_js(raw, "integration_type"),
        status=_js(raw, "status"), payment_id=_js(raw, "payment_id"), subscription_id=_js(raw, "subscription_id"),
        error_message=_or(_js(raw, "error_message"), ""), business_id=_js(raw, "business_id"),
        timestamp=_js(event, "timestamp"),
    )
    return fields, flat


def _unknown(t, _payload, raw, event):
    return {}, _obj(event_type=t, business_id=_js(event, "business_id"), timestamp=_js(event, "timestamp"))


_BUILDERS = {  # by model name: naming a model class would define it (events.model)
    "Payment": _payment, "Subscription": _subscription, "Dispute": _dispute, "Refund": _refund,
    "LicenseKey": _license_key, "Payout": _payout, "CreditLedgerEntry": _credit,
    "CreditBalanceLow": _credit_low, "AbandonedCheckout": _checkout, "Dunning": _dunning,
    "EntitlementGrant": _entitlement,
}


# --- the seed transforms' flat payloads ----------------------------------------


def _from_seed_flat(event: dict) -> dict:
    seed_type = event.get("event_type")
    if not isinstance(seed_type, str):
        raise MalformedField("event_type", "must be a string")
    if seed_type in ev.SEED_TYPES:
        event_type, name = ev.SEED_TYPES[seed_type]
    elif seed_type.startswith("dispute.") and ev.model_for(seed_type) is ev.Dispute:
        event_type, name = seed_type, "SeedDispute"
    else:
        raise MalformedField("event_type", "not an event type of the seed transforms (or `type` is missing)")
    f = ev.validate(ev.model(name), event, "")
    # The seed sent (minor / 100).toFixed(2) whatever the currency: * 100 recovers minor units.
    minor = None if f.amount is None else int(Decimal(f.amount).scaleb(2))
    flat = dict(event)
    fields: dict[str, Any] = {"entity_id": None}
    if name == "SeedPayment":
        currency = f.currency or "USD"
        fields.update(payment_id=f.payment_id, entity_id=f.payment_id, customer_email=f.customer_email,
                      customer_name=f.customer_name, **_money(minor, currency))
        meta = f.metadata or {}
        fields["product_id"] = _str(meta.get("product_id"))
        business_id = _str(meta.get("business_id"))
        if fields["amount"] is not None:
            flat["amount"] = fields["amount"]
    elif name == "SeedSubscription":
        fields.update(subscription_id=f.subscription_id, entity_id=f.subscription_id, customer_id=f.customer_id,
                      customer_email=f.customer_email, customer_name=f.customer_name, product_id=f.product_id,
                      amount_minor=minor)
        business_id = None
    else:
        fields.update(dispute_id=f.dispute_id, entity_id=f.dispute_id, payment_id=f.payment_id,
                      status=f.status, amount_minor=minor)
        business_id = f.business_id
    return _event(event_type, ev.category_of(event_type), "seed_flat", business_id,
                  _iso(f.timestamp, "timestamp"), fields, event, flat)


# --- helpers -----------------------------------------------------------------


def _iso(ts, field: str) -> str:
    """ISO 8601 UTC with 'Z'; a naive time is taken as UTC."""
    try:
        utc = ts.astimezone(timezone.utc) if ts.tzinfo else ts
    except OverflowError:
        raise MalformedField(field, "out of range") from None
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _customer(c: Optional[ev.Customer]) -> dict:
    if c is None:
        return {}
    return {"customer_id": c.customer_id, "customer_email": c.email, "customer_name": c.name}


def _money(minor: Optional[int], currency: Optional[str]) -> dict:
    return {"amount": _fmt(minor, currency), "amount_minor": minor, "currency": currency}


def _fmt(minor: Optional[int], currency: Optional[str]) -> Optional[str]:
    """Major units in the currency's true decimals; None if either is unknown (never guess)."""
    if minor is None or currency not in EXPONENTS:
        return None
    return format_major(minor, currency)


def _js(obj: Any, *path: str) -> Any:
    """`obj.a.b` as JavaScript reads it: _ABSENT where JavaScript gets undefined."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _ABSENT
        obj = obj[key]
    return obj


def _or(value: Any, default: Any) -> Any:
    """JavaScript's `value || default`."""
    falsy = value is _ABSENT or value is None or value is False or value == "" or (
        type(value) in (int, float) and value == 0)
    return default if falsy else value


def _obj(**kv: Any) -> dict:
    """An object literal as JSON.stringify writes it: undefined members are dropped."""
    return {k: v for k, v in kv.items() if v is not _ABSENT}


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None

