"""Dodo's event types and their categories: no dependencies, so the record step can ask.

A type Dodo does not document (yet) is category "unknown", whatever its prefix: a
`payment.teleported` carries no payment state the bundle can trust, so it is kept in
the inbox (status ignored) and changes no entity; a replay applies it once the code
knows the type.
"""

# Type prefix -> category (the contract's list).
CATEGORIES = {
    "payment": "payment",
    "refund": "refund",
    "dispute": "dispute",
    "subscription": "subscription",
    "license_key": "license_key",
    "payout": "payout",
    "credit": "credit",
    "abandoned_checkout": "checkout",
    "dunning": "dunning",
    "entitlement_grant": "entitlement",
}

# The 48 event types of dodopayments 1.123.0 (types/webhook_event_type.py).
EVENT_TYPES = (
    "payment.succeeded payment.failed payment.processing payment.cancelled "
    "refund.succeeded refund.failed "
    "dispute.opened dispute.expired dispute.accepted dispute.cancelled dispute.challenged dispute.won dispute.lost "
    "subscription.active subscription.renewed subscription.on_hold subscription.past_due subscription.paused "
    "subscription.unpaused subscription.cancelled subscription.failed subscription.expired "
    "subscription.plan_changed subscription.updated subscription.update_payment_method "
    "license_key.created "
    "payout.created payout.on_hold payout.in_progress payout.failed payout.success "
    "credit.added credit.deducted credit.expired credit.rolled_over credit.rollover_forfeited "
    "credit.overage_charged credit.overage_reset credit.manual_adjustment credit.balance_low "
    "abandoned_checkout.detected abandoned_checkout.recovered dunning.started dunning.recovered "
    "entitlement_grant.created entitlement_grant.delivered entitlement_grant.failed entitlement_grant.revoked"
).split()


_KNOWN = frozenset(EVENT_TYPES)


def category_of(event_type: str | None) -> str:
    """The category of a documented event type (by its prefix); "unknown" for any other."""
    if event_type not in _KNOWN:
        return "unknown"
    return CATEGORIES[event_type.partition(".")[0]]
