"""A deterministic stream of Dodo webhook deliveries for the operations tests.

`build_stream()` simulates a small business over a number of days: one-time payments in
four currencies (two, zero and three decimals), subscriptions that start, renew, go on
hold and cancel, refunds and disputes. Each delivery carries the object's full state at
its event time, as Dodo's webhooks do; `final` holds every object's last state, which is
what the Dodo API returns afterwards (the reconciliation stand-in serves it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

BUSINESS = "bus_ops_test"
CURRENCIES = ("USD", "EUR", "JPY", "KWD")
START = datetime(2026, 2, 1, tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Stream:
    deliveries: list[tuple[str, dict]] = field(default_factory=list)  # (webhook_id, envelope), time order
    final: dict[str, dict[str, dict]] = field(
        default_factory=lambda: {"payments": {}, "subscriptions": {}, "refunds": {}, "disputes": {}}
    )

    def emit(self, kind: str, event_type: str, at: datetime, data: dict) -> None:
        envelope = {"business_id": BUSINESS, "type": event_type, "timestamp": iso(at), "data": dict(data)}
        self.deliveries.append((f"msg_{len(self.deliveries):05d}", envelope))
        id_key = kind[:-1] + "_id"
        self.final[kind][data[id_key]] = dict(data)


def _customer(rng: random.Random) -> dict:
    n = rng.randrange(1, 40)
    return {"customer_id": f"cus_{n:03d}", "email": f"buyer{n}@example.com", "name": f"Buyer {n}"}


def _amount(rng: random.Random, currency: str) -> int:
    return {"USD": rng.randrange(500, 20000), "EUR": rng.randrange(500, 20000),
            "JPY": rng.randrange(500, 20000), "KWD": rng.randrange(1000, 90000)}[currency]


def _payment(rng, n, at, currency, amount, status, customer, subscription_id=None) -> dict:
    return {
        "payment_id": f"pay_{n:05d}", "business_id": BUSINESS, "brand_id": "bra_1",
        "created_at": iso(at), "updated_at": iso(at), "status": status,
        "total_amount": amount, "tax": amount // 11, "currency": currency,
        "settlement_amount": amount, "settlement_currency": currency, "settlement_tax": amount // 11,
        "customer": customer, "billing": {"country": "US"}, "payment_method": "card",
        "payment_method_type": "credit", "subscription_id": subscription_id,
        "product_cart": [{"product_id": f"pdt_{rng.randrange(1, 4)}", "quantity": rng.randrange(1, 3)}],
        "metadata": {}, "retry_attempt": 0, "payment_provider": "dodo", "digital_products_delivered": True,
        "has_license_key": False, "is_multi_subscription": False, "includes_usage": False,
        "subscription_ids": [subscription_id] if subscription_id else [], "service_periods": [],
        "error_code": None if status == "succeeded" else "card_declined",
        "error_message": None if status == "succeeded" else "Your card was declined.",
    }


def build_stream(days: int = 35, seed: int = 11, start: datetime = START) -> Stream:
    rng = random.Random(seed)
    s = Stream()
    counters = {"pay": 0, "sub": 0, "ref": 0, "dis": 0}
    subs: dict[str, dict] = {}  # live subscription state
    succeeded: list[dict] = []
    refunded: set[str] = set()
    open_disputes: list[dict] = []

    def next_id(kind: str) -> int:
        counters[kind] += 1
        return counters[kind]

    t = start
    for day in range(days):
        base = start + timedelta(days=day)
        t = max(t, base + timedelta(hours=1, microseconds=rng.randrange(1_000_000)))  # time only moves on

        def at() -> datetime:
            nonlocal t
            t += timedelta(minutes=rng.randrange(5, 50), microseconds=rng.randrange(1_000_000))
            return t

        # One-time payments; some pass through `processing` first.
        for _ in range(rng.randrange(2, 5)):
            currency = rng.choice(CURRENCIES)
            status = "succeeded" if rng.random() < 0.85 else "failed"
            created = at()
            p = _payment(rng, next_id("pay"), created, currency, _amount(rng, currency), status, _customer(rng))
            if rng.random() < 0.3:
                s.emit("payments", "payment.processing", created, dict(p, status="processing", error_code=None,
                                                                       error_message=None))
                later = at()
                p["updated_at"] = iso(later)
                s.emit("payments", f"payment.{status}", later, p)
            else:
                s.emit("payments", f"payment.{status}", created, p)
            if status == "succeeded":
                succeeded.append(p)

        # A new subscription most days, paid by its first payment.
        if rng.random() < 0.8:
            currency = rng.choice(CURRENCIES)
            interval = rng.choice(["Month", "Month", "Year", "Week"])
            created = at()
            sub_id = f"sub_{next_id('sub'):04d}"
            period = {"Month": 30, "Year": 365, "Week": 7}[interval]
            sub = {
                "subscription_id": sub_id, "business_id": BUSINESS, "product_id": f"pdt_s{rng.randrange(1, 3)}",
                "customer": _customer(rng), "status": "active", "currency": currency,
                "recurring_pre_tax_amount": _amount(rng, currency), "quantity": 1,
                "payment_frequency_count": 1, "payment_frequency_interval": interval,
                "subscription_period_count": 10, "subscription_period_interval": "Year",
                "created_at": iso(created), "previous_billing_date": iso(created),
                "next_billing_date": iso(created + timedelta(days=period)), "cancel_at_next_billing_date": False,
                "cancelled_at": None, "trial_period_days": 0, "addons": [], "metadata": {}, "on_demand": False,
                "billing": {"country": "US"}, "tax_inclusive": False, "discounts": [], "has_payment_method": True,
            }
            subs[sub_id] = sub
            p = _payment(rng, next_id("pay"), created, currency, sub["recurring_pre_tax_amount"], "succeeded",
                         sub["customer"], sub_id)
            s.emit("payments", "payment.succeeded", created, p)
            succeeded.append(p)
            s.emit("subscriptions", "subscription.active", at(), sub)

        # Renewals, holds and cancellations of live subscriptions.
        for sub_id, sub in sorted(subs.items()):
            if sub["status"] not in ("active", "on_hold"):
                continue
            now = base + timedelta(hours=23)
            if sub["status"] == "active" and sub["next_billing_date"] <= iso(now):
                when = at()
                period = {"Month": 30, "Year": 365, "Week": 7}[sub["payment_frequency_interval"]]
                if rng.random() < 0.85:
                    p = _payment(rng, next_id("pay"), when, sub["currency"], sub["recurring_pre_tax_amount"],
                                 "succeeded", sub["customer"], sub_id)
                    s.emit("payments", "payment.succeeded", when, p)
                    succeeded.append(p)
                    sub.update(previous_billing_date=sub["next_billing_date"],
                               next_billing_date=iso(datetime.fromisoformat(sub["next_billing_date"])
                                                     + timedelta(days=period)))
                    s.emit("subscriptions", "subscription.renewed", at(), dict(sub, payment_id=p["payment_id"]))
                else:
                    sub["status"] = "on_hold"
                    s.emit("subscriptions", "subscription.on_hold", at(), sub)
            elif sub["status"] == "on_hold" and rng.random() < 0.5:
                sub["status"] = "active"
                s.emit("subscriptions", "subscription.active", at(), sub)
            elif rng.random() < 0.02:
                when = at()
                sub.update(status="cancelled", cancelled_at=iso(when))
                s.emit("subscriptions", "subscription.cancelled", when, sub)
            elif rng.random() < 0.01:
                sub["status"] = "expired"
                s.emit("subscriptions", "subscription.expired", at(), sub)

        # Refunds (full or partial; a few fail) of recent payments.
        for p in list(succeeded[-6:]):
            if p["payment_id"] in refunded or rng.random() >= 0.12:
                continue
            refunded.add(p["payment_id"])
            partial = rng.random() < 0.5
            amount = p["total_amount"] // 2 if partial else p["total_amount"]
            status = "succeeded" if rng.random() < 0.85 else "failed"
            when = at()
            r = {"refund_id": f"ref_{next_id('ref'):04d}", "payment_id": p["payment_id"], "business_id": BUSINESS,
                 "created_at": iso(when), "status": status, "amount": amount, "currency": p["currency"],
                 "is_partial": partial, "reason": "requested_by_customer", "customer": p["customer"],
                 "metadata": {}}
            s.emit("refunds", f"refund.{status}", when, r)

        # Disputes: opened, later challenged and won or lost; some stay open.
        if succeeded and rng.random() < 0.3:
            p = rng.choice(succeeded[-10:])
            when = at()
            d = {"dispute_id": f"dis_{next_id('dis'):04d}", "payment_id": p["payment_id"], "business_id": BUSINESS,
                 "created_at": iso(when), "amount": str(p["total_amount"]), "currency": p["currency"],
                 "dispute_stage": "dispute", "dispute_status": "dispute_opened", "remarks": None,
                 "customer": p["customer"], "reason": "fraudulent", "payment_provider": "dodo"}
            open_disputes.append(d)
            s.emit("disputes", "dispute.opened", when, d)
        for d in list(open_disputes):
            if d["created_at"] < iso(base) and rng.random() < 0.4:
                open_disputes.remove(d)
                d["dispute_status"] = "dispute_challenged"
                s.emit("disputes", "dispute.challenged", at(), d)
                outcome = rng.choice(["won", "lost"])
                d["dispute_status"] = f"dispute_{outcome}"
                s.emit("disputes", f"dispute.{outcome}", at(), d)

    return s
