"""Pydantic v2 models of Dodo webhook events: the envelope and one model per payload family.

Tolerant where Dodo varies (extra fields kept, str<->number coercion, nulls accepted,
unknown types kept as category "unknown"), strict where it matters (`type`,
`timestamp` and each family's id), and every failure is an `EventError` naming the field.

Each Windmill job is a fresh interpreter that normalises one event, so a payload model is
defined and built only when an event of its family arrives (`model_for`; module
attributes such as `events.Payment` define theirs on first access): defining and
building all of them cost more than pydantic's own import (docs/internals.md, "What
each hot-path step imports").
"""

import functools
import re
import sys
import types
from datetime import datetime
from typing import Annotated, Any, Optional


def _no_plugin_lookup() -> None:
    """pydantic looks for plugins when it builds its first validator, importing
    importlib.metadata to read every installed package's entry points: about two bare
    interpreter starts in each job, for plugins the bundle does not use. This gives
    pydantic's plugin loader (pydantic/plugin/_loader.py, `get_plugins`) the answer
    PYDANTIC_DISABLE_PLUGINS=__all__ gives, without that import. Unless another import
    loaded the real loader first, which then stays."""
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        loader = types.ModuleType(name, "no pydantic plugins in the bundle's jobs (f/dodo/lib/events.py)")
        loader.get_plugins = lambda: ()
        sys.modules[name] = loader


_no_plugin_lookup()

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError  # noqa: E402

from f.dodo.lib.errors import EventError, MalformedField, MissingField
from f.dodo.lib.event_types import CATEGORIES, EVENT_TYPES, category_of  # noqa: F401 - re-exported
from f.dodo.lib.money import parse_minor


def _not_null(v: Any) -> Any:
    if v is None:
        raise ValueError("missing")
    return v


def _minor(v: Any) -> Optional[int]:
    return None if v is None else parse_minor(v)  # EventError is a ValueError: pydantic reports it


def _upper(v: str) -> str:
    return v.upper()


def _empty_is_none(v: Any) -> Any:
    return None if v == "" else v


def _require_str(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError("must be an ISO 8601 date-time string")
    return v


# An id: a short token such as "pay_2IjeQm4hqU6RA4Z4kwDee" (numbers coerced to str).
Id = Annotated[str, BeforeValidator(_not_null), Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$")]
OptId = Optional[Annotated[str, Field(max_length=255)]]
Minor = Annotated[Optional[int], BeforeValidator(_minor)]  # integer minor units, never a float
Currency = Annotated[
    Optional[Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(_upper)]], BeforeValidator(_empty_is_none)
]
Timestamp = Annotated[datetime, BeforeValidator(_require_str), BeforeValidator(_not_null)]
Text = Optional[str]


class _Model(BaseModel):
    # Extra fields are kept; a str field that arrives as a number is accepted. The
    # validator is built on first use (a nested Customer inside its family's model).
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, defer_build=True)


class Customer(_Model):
    customer_id: Text = None
    email: Text = None
    name: Text = None
    phone_number: Text = None
    metadata: Optional[dict] = None


def _payment() -> type[_Model]:
    class Payment(_Model):
        payment_id: Id
        business_id: Text = None
        brand_id: Text = None
        status: Text = None
        total_amount: Minor = None
        tax: Minor = None
        settlement_amount: Minor = None
        settlement_tax: Minor = None
        currency: Currency = None
        settlement_currency: Currency = None
        customer: Optional[Customer] = None
        payment_method: Text = None
        payment_method_type: Text = None
        subscription_id: OptId = None
        product_id: OptId = None  # not in the SDK; some senders add it
        product_cart: Optional[list] = None
        created_at: Text = None
        updated_at: Text = None
        error_code: Text = None
        error_message: Text = None
        charge_type: Text = None
        invoice_id: Text = None
        metadata: Optional[dict] = None
    return Payment


def _refund() -> type[_Model]:
    class Refund(_Model):
        refund_id: Id
        payment_id: OptId = None
        business_id: Text = None
        status: Text = None
        amount: Minor = None
        currency: Currency = None
        is_partial: Optional[bool] = None
        reason: Text = None
        customer: Optional[Customer] = None
        created_at: Text = None
        metadata: Optional[dict] = None
    return Refund


def _dispute() -> type[_Model]:
    class Dispute(_Model):
        dispute_id: Id
        payment_id: OptId = None
        business_id: Text = None
        amount: Minor = None  # the SDK types it str ("4999"): minor units either way
        currency: Currency = None
        dispute_stage: Text = None
        dispute_status: Text = None
        remarks: Text = None
        reason: Text = None
        is_resolved_by_rdr: Optional[bool] = None
        customer: Optional[Customer] = None
        created_at: Text = None
    return Dispute


def _subscription() -> type[_Model]:
    class Subscription(_Model):
        subscription_id: Id
        product_id: OptId = None
        status: Text = None
        recurring_pre_tax_amount: Minor = None
        currency: Currency = None
        customer: Optional[Customer] = None
        quantity: Optional[int] = None
        payment_frequency_count: Optional[int] = None
        payment_frequency_interval: Text = None
        subscription_period_count: Optional[int] = None
        subscription_period_interval: Text = None
        next_billing_date: Text = None
        previous_billing_date: Text = None
        created_at: Text = None
        cancel_at_next_billing_date: Optional[bool] = None
        cancelled_at: Text = None
        payment_id: OptId = None  # set on subscription.renewed only
        metadata: Optional[dict] = None
    return Subscription


def _license_key() -> type[_Model]:
    class LicenseKey(_Model):
        id: Id
        business_id: Text = None
        customer_id: OptId = None
        product_id: OptId = None
        payment_id: OptId = None
        subscription_id: OptId = None
        status: Text = None
        activations_limit: Optional[int] = None
        instances_count: Optional[int] = None
        expires_at: Text = None
        created_at: Text = None
    return LicenseKey


def _payout() -> type[_Model]:
    class Payout(_Model):
        payout_id: Id
        business_id: Text = None
        status: Text = None
        amount: Minor = None
        fee: Minor = None
        tax: Minor = None
        refunds: Minor = None
        chargebacks: Minor = None
        currency: Currency = None
        payment_method: Text = None
        remarks: Text = None
        created_at: Text = None
        updated_at: Text = None
    return Payout


def _credit_ledger_entry() -> type[_Model]:
    class CreditLedgerEntry(_Model):
        # Credit amounts are credits, not money: decimal strings kept as received.
        id: Id
        business_id: Text = None
        customer_id: OptId = None
        credit_entitlement_id: OptId = None
        amount: Text = None
        balance_before: Text = None
        balance_after: Text = None
        overage_before: Text = None
        overage_after: Text = None
        is_credit: Optional[bool] = None
        transaction_type: Text = None
        grant_id: OptId = None
        reference_id: OptId = None
        reference_type: Text = None
        description: Text = None
        created_at: Text = None
    return CreditLedgerEntry


def _credit_balance_low() -> type[_Model]:
    class CreditBalanceLow(_Model):
        credit_entitlement_id: Id
        credit_entitlement_name: Text = None
        customer_id: OptId = None
        subscription_id: OptId = None
        available_balance: Text = None
        subscription_credits_amount: Text = None
        threshold_amount: Text = None
        threshold_percent: Optional[int] = None
    return CreditBalanceLow


def _abandoned_checkout() -> type[_Model]:
    class AbandonedCheckout(_Model):
        payment_id: Id
        customer_id: OptId = None
        status: Text = None
        abandonment_reason: Text = None
        abandoned_at: Text = None
        recovered_payment_id: OptId = None
    return AbandonedCheckout


def _dunning() -> type[_Model]:
    class Dunning(_Model):
        subscription_id: Id
        customer_id: OptId = None
        payment_id: OptId = None
        status: Text = None
        trigger_state: Text = None
        created_at: Text = None
    return Dunning


def _entitlement_grant() -> type[_Model]:
    class EntitlementGrant(_Model):
        id: Id
        business_id: Text = None
        customer_id: OptId = None
        entitlement_id: OptId = None
        integration_type: Text = None
        status: Text = None
        payment_id: OptId = None
        subscription_id: OptId = None
        error_code: Text = None
        error_message: Text = None
        delivered_at: Text = None
        revoked_at: Text = None
        created_at: Text = None
    return EntitlementGrant


# The flat payloads of the seed's dashboard transforms (sent instead of the envelope
# by users who pasted them into Dodo). Amounts there are (minor / 100).toFixed(2).
SeedAmount = Optional[Annotated[str, Strict(), Field(pattern=r"^-?[0-9]{1,30}(\.[0-9]{1,2})?$")]]


@functools.cache
def _seed_flat() -> type[_Model]:
    class _SeedFlat(_Model):
        event_type: str
        timestamp: Timestamp
    return _SeedFlat


def _seed_payment() -> type[_Model]:
    class SeedPayment(_seed_flat()):
        payment_id: Id
        amount: SeedAmount = None
        currency: Currency = None
        customer_email: Text = None
        customer_name: Text = None
        metadata: Optional[dict] = None
    return SeedPayment


def _seed_subscription() -> type[_Model]:
    class SeedSubscription(_seed_flat()):
        subscription_id: Id
        customer_id: OptId = None
        customer_email: Text = None
        customer_name: Text = None
        product_id: OptId = None
        amount: SeedAmount = None
    return SeedSubscription


def _seed_dispute() -> type[_Model]:
    class SeedDispute(_seed_flat()):
        dispute_id: Id
        payment_id: OptId = None
        business_id: Text = None
        amount: SeedAmount = None
        status: Text = None
    return SeedDispute


# Dispatch: by exact type first, then by category (model names: see `model`).
TYPE_MODELS: dict[str, str] = {"credit.balance_low": "CreditBalanceLow"}
CATEGORY_MODELS: dict[str, str] = {
    "payment": "Payment",
    "refund": "Refund",
    "dispute": "Dispute",
    "subscription": "Subscription",
    "license_key": "LicenseKey",
    "payout": "Payout",
    "credit": "CreditLedgerEntry",
    "checkout": "AbandonedCheckout",
    "dunning": "Dunning",
    "entitlement": "EntitlementGrant",
}
# The field holding each model's own id.
ID_FIELDS: dict[str, str] = {
    "Payment": "payment_id", "Refund": "refund_id", "Dispute": "dispute_id", "Subscription": "subscription_id",
    "LicenseKey": "id", "Payout": "payout_id", "CreditLedgerEntry": "id", "CreditBalanceLow": "credit_entitlement_id",
    "AbandonedCheckout": "payment_id", "Dunning": "subscription_id", "EntitlementGrant": "id",
}
_DEFINE = {
    "Payment": _payment, "Refund": _refund, "Dispute": _dispute, "Subscription": _subscription,
    "LicenseKey": _license_key, "Payout": _payout, "CreditLedgerEntry": _credit_ledger_entry,
    "CreditBalanceLow": _credit_balance_low, "AbandonedCheckout": _abandoned_checkout, "Dunning": _dunning,
    "EntitlementGrant": _entitlement_grant,
    "SeedPayment": _seed_payment, "SeedSubscription": _seed_subscription, "SeedDispute": _seed_dispute,
}


@functools.cache
def model(name: str) -> type[_Model]:
    """The model class called `name` (e.g. "Payment"), defined on first use."""
    return _DEFINE[name]()


def __getattr__(name: str) -> type[_Model]:
    """`events.Payment` and `from f.dodo.lib.events import Payment` (PEP 562) define it on first access."""
    if name in _DEFINE:
        return model(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_for(event_type: str) -> Optional[type[_Model]]:
    """The payload model of an event type, or None for unknown types."""
    name = TYPE_MODELS.get(event_type) or CATEGORY_MODELS.get(category_of(event_type))
    return model(name) if name else None


class Envelope(_Model):
    """`{business_id, type, timestamp, data}`; `payload` is `data` parsed by its family model."""

    type: Annotated[str, Strict(), BeforeValidator(_not_null), Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")]
    timestamp: Timestamp
    business_id: Text = None
    data: Any = None
    payload: Any = Field(default=None, exclude=True)  # set by parse_event: one family model, built on demand

    @property
    def category(self) -> str:
        return category_of(self.type)


def parse_event(event: Any) -> Envelope:
    """Validate an envelope and its payload; raise `EventError` naming the first bad field."""
    if not isinstance(event, dict):
        raise MalformedField("event", "must be a JSON object")
    if "payload" in event:  # `payload` is ours: keep a sender's own field out of it
        event = {k: v for k, v in event.items() if k != "payload"}
    env = validate(Envelope, event, "")
    model = model_for(env.type)
    if model is not None:
        if env.data is None:
            raise MissingField("data")
        env.payload = validate(model, env.data, "data")
    return env


def validate(model: type[BaseModel], value: Any, prefix: str) -> Any:
    """`model.model_validate(value)` with pydantic errors turned into `EventError`."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _event_error(exc, prefix) from None
    except RecursionError:
        raise MalformedField(prefix or "event", "nested too deeply") from None


_PATH_PART = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def _event_error(exc: ValidationError, prefix: str) -> EventError:
    err = exc.errors(include_url=False, include_input=False)[0]
    parts = [prefix] if prefix else []
    for p in err["loc"]:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{p}]"]
        else:  # a field name from the input could be anything: keep the message readable
            parts.append(p if _PATH_PART.match(str(p)) else "?")
    field = ".".join(parts) or "event"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing" or msg == "missing":
        return MissingField(field)
    if isinstance(err.get("ctx", {}).get("error"), EventError):  # a money error: keep its problem text
        msg = err["ctx"]["error"].problem
    return MalformedField(field, msg)


# Seed event_type -> (Dodo type, model name); dispute.* keeps its own type.
SEED_TYPES: dict[str, tuple[str, str]] = {
    "payment.succeeded": ("payment.succeeded", "SeedPayment"),
    "subscription_started": ("subscription.active", "SeedSubscription"),
    "subscription_cancelled": ("subscription.cancelled", "SeedSubscription"),
}
