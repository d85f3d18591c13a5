"""Seeded, reproducible customer lifecycles across every Dodo event family, with ground truth.

`simulate(seed, customers)` plays a small business for four months: customers check out
(some abandon, some come back), pay in USD, EUR, INR, JPY or KWD, subscribe monthly or
yearly, renew, change plan, fail a renewal and go through dunning and on_hold, cancel,
get refunds, open disputes that are won or lost, receive license keys, entitlement
grants and credits; the business gets payouts. Every event carries the object's full
state at its event time, as Dodo sends it, under a unique webhook-id.

The ground truth (`Truth`) is computed from this module's own model of each object (the
state it last gave the object), never by running the bundle: the final row of every
entity, refunded amounts, MRR and net revenue per currency, the notifications each
channel should carry (from `ROUTING`, the soak's routing rules) and the CRM contacts and
timeline notes. Amounts are integer minor units; exponents come from this module's own
table, so a wrong exponent in the bundle shows up as a difference.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from fnmatch import fnmatchcase

BUSINESS = "bus_soak"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DAYS = 120
# currency -> (exponent, monthly prices in minor units)
CURRENCIES = {"USD": (2, [1500, 2900, 9900]), "EUR": (2, [1900, 4900]), "INR": (2, [49900, 149900]),
              "JPY": (0, [1200, 4800]), "KWD": (3, [4500, 12500])}
SMS_TO = "+15550001111"
EMAIL_TO = "ops@example.com"
# The soak's notification rules: (event type pattern, channels). Every summary carries the
# webhook-id in brackets, so a stand-in can attribute each message it receives.
RULES = [("dispute.opened", ["slack", "email", "sms"]), ("dispute.*", ["slack"]),
         ("payment.failed", ["slack", "email"]), ("subscription.on_hold", ["slack", "sms"]),
         ("subscription.cancelled", ["slack", "email"]), ("subscription.active", ["slack"]),
         ("refund.*", ["slack"]), ("payout.failed", ["email"]), ("abandoned_checkout.recovered", ["sms"])]
ROUTING = {"slack_channel": "#soak", "email_to": [EMAIL_TO], "sms_to": [SMS_TO], "digest_channel": "slack",
           "rules": [{"match": m, "channels": ch, "summary": "[$webhook_id] $amount $customer_name"}
                     for m, ch in RULES]}
CRM_FAMILIES = ("payment", "subscription", "refund", "dispute")   # payloads with customer{email}
NOTE_FAMILIES = ("payment", "refund", "dispute")                  # timeline notes
PER_YEAR = {"Day": 365, "Week": 52, "Month": 12, "Year": 1}


def iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def channels_for(event_type: str) -> list[str]:
    return next((ch for m, ch in RULES if fnmatchcase(event_type, m)), [])


def to_major(minor: int | Fraction, currency: str) -> str:
    """Exact major units, rounded half away from zero to the currency's exponent."""
    exp = CURRENCIES[currency][0]
    q = Fraction(minor) / 10**exp
    n = abs(q) * 10**exp
    whole = int(n) + (1 if n - int(n) >= Fraction(1, 2) else 0)
    whole = -whole if q < 0 else whole
    s = str(abs(whole)).rjust(exp + 1, "0")
    out = s if exp == 0 else f"{s[:-exp]}.{s[-exp:]}"
    return ("-" if whole < 0 else "") + out


@dataclass
class Event:
    """One distinct event: one webhook-id, the envelope Dodo signs and sends."""
    webhook_id: str
    type: str
    at: datetime
    data: dict

    @property
    def envelope(self) -> dict:
        return {"business_id": BUSINESS, "type": self.type, "timestamp": iso(self.at), "data": self.data}

    @property
    def body(self) -> str:
        return json.dumps(self.envelope, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Truth:
    """The final Postgres state and the side effects the events must produce."""
    inbox: dict[str, str] = field(default_factory=dict)          # webhook_id -> inbox status
    tables: dict[str, dict] = field(default_factory=dict)        # table -> key -> {column: value}
    mrr: dict[str, tuple[int, str]] = field(default_factory=dict)   # currency -> (active subs, MRR major)
    net: dict[str, str] = field(default_factory=dict)            # currency -> net revenue major
    notifications: set[tuple[str, str]] = field(default_factory=set)  # (webhook_id, slack|email|sms)
    contacts: dict[str, str] = field(default_factory=dict)       # email -> dodo customer id
    notes: dict[str, str] = field(default_factory=dict)          # webhook_id -> contact email
    # The per-event destinations (README "Integrations"): analytics events (event type, who, when)
    # with who = the customer id, else the email; identify calls (who, when) of events naming
    # the customer; the Mailchimp audience (email -> its tags);
    # live calendar events ((renewal|trial|dispute, object id) -> date).
    analytics: dict[tuple[str, str, str], str] = field(default_factory=dict)  # -> webhook_id
    identifies: dict[tuple[str, str], str] = field(default_factory=dict)      # -> webhook_id
    audience: dict[str, frozenset] = field(default_factory=dict)
    calendar: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Simulation:
    seed: int
    events: list[Event]
    truth: Truth

    def deliveries(self, duplicates: float = 0.3, window: int = 40, seed: int | None = None) -> list[Event]:
        """Delivery order: event-time order, reshuffled within `window`, plus redeliveries
        (same webhook-id) making up `duplicates` of all deliveries, each landing up to
        `window` places after its original."""
        rng = random.Random(self.seed * 7919 + 1 if seed is None else seed)
        order = sorted(self.events, key=lambda e: (e.at, e.webhook_id))
        n_dup = round(len(order) * duplicates / (1 - duplicates))
        slots: list[tuple[float, Event]] = [(i + rng.random() * window, e) for i, e in enumerate(order)]
        for e_i in rng.choices(range(len(order)), k=n_dup):
            slots.append((e_i + window + rng.random() * window, order[e_i]))
        slots.sort(key=lambda s: s[0])
        return [e for _, e in slots]


class _Business:
    """The model: objects as Dodo holds them, and the events it sends about them."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.state: dict[tuple[str, str], tuple[datetime, str, dict]] = {}  # (table, key) -> last event
        self.n = 0
        self.payouts: dict[str, int] = {}  # currency -> settled minor units since the last payout

    def uid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n:07d}"

    def emit(self, etype: str, at: datetime, data: dict, table: str | None, key) -> datetime:
        """Send the event; remember it as the latest state of (table, key)."""
        data = json.loads(json.dumps(data))  # a snapshot: later changes are later events
        e = Event(f"msg_soak_{len(self.events) + 1:07d}", etype, at, data)
        self.events.append(e)
        if table:
            prev = self.state.get((table, key))
            assert prev is None or (prev[0], prev[1]) < (at, e.webhook_id), (table, key)
            self.state[(table, key)] = (at, e.webhook_id, data)
        return at + timedelta(minutes=self.rng.randint(1, 90), microseconds=self.rng.randint(0, 999_999))

    # -- objects

    def customer(self, i: int) -> dict:
        first = self.rng.choice(["Ada", "Kenji", "Layla", "Bob", "Ana", "Olu", "Mei", "Ivan", "Sara", "Tariq"])
        last = self.rng.choice(["Lovelace", "Sato", "Al-Sabah", "Stone", "Souza", "Adeyemi", "Chen", "Petrov"])
        cid = f"cus_soak_{i:05d}"
        return {"customer_id": cid, "email": f"{first.lower()}.{i}@example.com", "name": f"{first} {last}",
                "phone_number": None, "metadata": {}}

    def payment(self, cust, amount, currency, at, status, *, sub=None, charge="new", product="prod_a"):
        return {"payment_id": self.uid("pay"), "business_id": BUSINESS, "brand_id": "bnd_soak",
                "created_at": iso(at), "updated_at": iso(at), "status": status, "total_amount": amount,
                "tax": 0 if status == "succeeded" else None, "settlement_amount": amount,
                "settlement_currency": currency, "settlement_tax": 0, "currency": currency, "customer": cust,
                "billing": {"country": "US"}, "payment_method": "card" if status == "succeeded" else None,
                "payment_method_type": "credit", "card_last_four": "4242", "card_network": "VISA",
                "product_cart": [{"product_id": product, "quantity": 1}], "subscription_id": sub,
                "subscription_ids": [sub] if sub else [], "refunds": [], "disputes": [], "metadata": {},
                "charge_type": charge, "retry_attempt": 0, "payment_provider": "stripe",
                "error_code": None if status != "failed" else "CARD_DECLINED",
                "error_message": None if status != "failed" else "Your card was declined."}

    def pay(self, cust, amount, currency, at, *, sub=None, charge="new", product="prod_a", fail=False):
        """A payment's events (sometimes processing first); returns (payment, next time)."""
        p = self.payment(cust, amount, currency, at, "processing", sub=sub, charge=charge, product=product)
        if self.rng.random() < 0.2:
            at = self.emit("payment.processing", at, p, "payments", p["payment_id"])
        p["status"] = "failed" if fail else "succeeded"
        p |= {"updated_at": iso(at), "tax": None if fail else 0, "payment_method": None if fail else "card",
              "error_code": "CARD_DECLINED" if fail else None,
              "error_message": "Your card was declined." if fail else None}
        at = self.emit("payment.failed" if fail else "payment.succeeded", at, p, "payments", p["payment_id"])
        if not fail:
            self.payouts[currency] = self.payouts.get(currency, 0) + amount
        return p, at

    def refund(self, p, at, *, full: bool, fail=False):
        amount = p["total_amount"] if full else max(1, p["total_amount"] // self.rng.choice([2, 3, 4]))
        r = {"refund_id": self.uid("ref"), "payment_id": p["payment_id"], "business_id": BUSINESS,
             "brand_id": "bnd_soak", "created_at": iso(at), "status": "failed" if fail else "succeeded",
             "amount": amount, "currency": p["currency"], "is_partial": not full, "reason": "Customer request",
             "customer": p["customer"], "metadata": {}}
        return self.emit("refund.failed" if fail else "refund.succeeded", at, r, "refunds", r["refund_id"])

    def dispute(self, p, at):
        d = {"dispute_id": self.uid("dsp"), "payment_id": p["payment_id"], "business_id": BUSINESS,
             "created_at": iso(at), "amount": str(p["total_amount"]), "currency": p["currency"],
             "dispute_stage": "dispute", "dispute_status": "dispute_opened", "is_resolved_by_rdr": False,
             "remarks": None, "customer": p["customer"], "reason": "fraudulent"}
        at = self.emit("dispute.opened", at, d, "disputes", d["dispute_id"])
        if self.rng.random() < 0.5:
            d |= {"dispute_status": "dispute_challenged", "remarks": "Evidence submitted"}
            at = self.emit("dispute.challenged", at, d, "disputes", d["dispute_id"])
        end = self.rng.choice(["won", "lost", "lost", "accepted", "expired"])
        d |= {"dispute_status": f"dispute_{end}", "remarks": f"Dispute {end}"}
        return self.emit(f"dispute.{end}", at, d, "disputes", d["dispute_id"])

    def subscription(self, cust, amount, currency, interval, at, product):
        return {"subscription_id": self.uid("sub"), "product_id": product, "customer": cust,
                "status": "active", "recurring_pre_tax_amount": amount, "currency": currency, "quantity": 1,
                "payment_frequency_count": 1, "payment_frequency_interval": interval,
                "subscription_period_count": 12, "subscription_period_interval": "Month",
                "next_billing_date": iso(at), "previous_billing_date": iso(at), "created_at": iso(at),
                "cancel_at_next_billing_date": False, "cancelled_at": None, "trial_period_days": 0,
                "addons": [], "metadata": {}, "tax_inclusive": False, "on_demand": False,
                "discount_cycles_remaining": None, "past_due_ends_at": None, "billing": {"country": "US"}}

    def grant(self, cust_id, p, at):
        g = {"id": self.uid("egr"), "business_id": BUSINESS, "brand_id": "bnd_soak", "created_at": iso(at),
             "customer_id": cust_id, "entitlement_id": "ent_soak_files", "integration_type": "digital_files",
             "metadata": {}, "status": "Pending", "updated_at": iso(at), "payment_id": p["payment_id"],
             "subscription_id": p["subscription_id"]}
        at = self.emit("entitlement_grant.created", at, g, "entitlement_grants", g["id"])
        ok = self.rng.random() < 0.9
        g |= {"status": "Delivered", "delivered_at": iso(at)} if ok else \
            {"status": "Failed", "error_code": "DELIVERY_FAILED", "error_message": "Integration unreachable"}
        at = self.emit("entitlement_grant.delivered" if ok else "entitlement_grant.failed", at, g,
                       "entitlement_grants", g["id"])
        return g, at

    def license_key(self, cust_id, p, at, product):
        k = {"id": self.uid("lic"), "business_id": BUSINESS, "brand_id": "bnd_soak", "created_at": iso(at),
             "customer_id": cust_id, "instances_count": 0, "key": f"LK-{self.n:08X}", "product_id": product,
             "source": "auto", "status": "active", "activations_limit": 3, "expires_at": None,
             "payment_id": p["payment_id"], "subscription_id": p["subscription_id"]}
        return self.emit("license_key.created", at, k, "license_keys", k["id"])

    def credits(self, cust_id, sub_id, at, end):
        """A credit entitlement: granted, used, sometimes topped up or expired."""
        balance, cde = 0, self.uid("cde")
        kinds = [("credit.added", "credit_added", True)] + [
            self.rng.choice([("credit.deducted", "credit_deducted", False)] * 3 + [
                ("credit.manual_adjustment", "manual_adjustment", True), ("credit.expired", "credit_expired", False),
                ("credit.rolled_over", "credit_rolled_over", True)]) for _ in range(self.rng.randint(1, 4))]
        for etype, ttype, is_credit in kinds:
            if at > end:
                break
            amount = self.rng.randint(1, 400) if is_credit else min(balance, self.rng.randint(1, 300))
            after = balance + amount if is_credit else balance - amount
            c = {"id": self.uid("cle"), "amount": str(amount), "balance_after": str(after),
                 "balance_before": str(balance), "brand_id": "bnd_soak", "business_id": BUSINESS,
                 "created_at": iso(at), "credit_entitlement_id": cde, "customer_id": cust_id,
                 "is_credit": is_credit, "metadata": {}, "overage_after": "0", "overage_before": "0",
                 "transaction_type": ttype, "description": etype, "grant_id": None, "reference_id": sub_id,
                 "reference_type": "subscription"}
            at = self.emit(etype, at, c, "credit_ledger_entries", c["id"])
            balance = after
            if balance < 50 and self.rng.random() < 0.5:
                at = self.emit("credit.balance_low", at, {
                    "available_balance": str(balance), "brand_id": "bnd_soak", "credit_entitlement_id": cde,
                    "credit_entitlement_name": "API calls", "customer_id": cust_id, "subscription_id": sub_id,
                    "subscription_credits_amount": "400", "threshold_amount": "50", "threshold_percent": 12},
                    None, None)
        return at

    # -- lifecycles

    def lifecycle(self, i: int) -> None:
        rng = self.rng
        cust = self.customer(i)
        currency = rng.choice(list(CURRENCIES))
        price = rng.choice(CURRENCIES[currency][1])
        at = START + timedelta(days=rng.uniform(0, DAYS * 0.8), seconds=rng.randint(0, 86399))
        end = START + timedelta(days=DAYS)
        if rng.random() < 0.12:  # abandoned checkout, sometimes recovered
            pid = self.uid("pay")
            a = {"abandoned_at": iso(at), "abandonment_reason": "payment_failed", "brand_id": "bnd_soak",
                 "customer_id": cust["customer_id"], "payment_id": pid, "status": "abandoned",
                 "recovered_payment_id": None}
            at = self.emit("abandoned_checkout.detected", at, a, "abandoned_checkouts", pid)
            if rng.random() < 0.6:
                return
            p, at = self.pay(cust, price, currency, at + timedelta(hours=rng.randint(1, 48)))
            a |= {"status": "recovered", "recovered_payment_id": p["payment_id"]}
            at = self.emit("abandoned_checkout.recovered", at, a, "abandoned_checkouts", pid)
        if rng.random() < 0.2:  # a one-time purchase
            p, at = self.pay(cust, price * rng.randint(1, 3), currency, at, product="prod_once",
                             fail=rng.random() < 0.1)
            if p["status"] == "succeeded":
                at = self.after_payment(cust, p, at, "prod_once")
            return
        self.subscribe(cust, currency, price, at, end)

    def after_payment(self, cust, p, at, product) -> datetime:
        rng = self.rng
        if rng.random() < 0.3:
            at = self.license_key(cust["customer_id"], p, at, product)
        if rng.random() < 0.2:
            g, at = self.grant(cust["customer_id"], p, at)
        if rng.random() < 0.08:
            at = self.refund(p, at + timedelta(days=rng.randint(1, 10)), full=rng.random() < 0.5,
                             fail=rng.random() < 0.1)
            if rng.random() < 0.3:  # a second, partial refund
                at = self.refund(p, at + timedelta(days=1), full=False)
        if rng.random() < 0.03:
            at = self.dispute(p, at + timedelta(days=rng.randint(2, 20)))
        return at

    def subscribe(self, cust, currency, price, at, end) -> None:
        rng = self.rng
        interval = "Year" if rng.random() < 0.2 else "Month"
        amount = price * (10 if interval == "Year" else 1)
        product = f"prod_{currency.lower()}_{price}"
        s = self.subscription(cust, amount, currency, interval, at, product)
        sid = s["subscription_id"]
        p, at = self.pay(cust, amount, currency, at, sub=sid, product=product)
        at = self.after_payment(cust, p, at, product)
        at = self.emit("subscription.active", at, s, "subscriptions", sid)
        if rng.random() < 0.2:
            at = self.credits(cust["customer_id"], sid, at, end)
        period = timedelta(days=365 if interval == "Year" else 30)
        billing = datetime.fromisoformat(s["created_at"].replace("Z", "+00:00")) + period
        cancel_at = end + timedelta(days=1) if rng.random() < 0.7 else at + timedelta(days=rng.uniform(5, DAYS))
        while billing < end and billing < cancel_at and s["status"] == "active":
            at = max(at, billing)
            if rng.random() < 0.1:  # plan change mid-cycle, prorated charge
                s |= {"product_id": product + "_plus", "recurring_pre_tax_amount": s["recurring_pre_tax_amount"] * 2}
                at = self.emit("subscription.plan_changed", at, s, "subscriptions", sid)
                p, at = self.pay(cust, s["recurring_pre_tax_amount"] // 2, currency, at, sub=sid,
                                 charge="plan_change", product=s["product_id"])
            fail = rng.random() < 0.12
            p, at = self.pay(cust, s["recurring_pre_tax_amount"], currency, at, sub=sid, charge="renewal",
                             product=s["product_id"], fail=fail)
            if fail:
                at = self.dunning(cust, s, p, at, end)
            else:
                s |= {"previous_billing_date": iso(billing), "next_billing_date": iso(billing + period)}
                at = self.emit("subscription.renewed", at, s, "subscriptions", sid)
                at = self.after_payment(cust, p, at, s["product_id"])
            billing += period
        if s["status"] == "active" and cancel_at <= end:
            at = max(at, cancel_at)
            s |= {"status": "cancelled", "cancelled_at": iso(at), "cancelled_by": "customer",
                  "cancellation_feedback": "too_expensive"}
            self.emit("subscription.cancelled", at, s, "subscriptions", sid)

    def dunning(self, cust, s, failed, at, end) -> datetime:
        """A declined renewal: on_hold, dunning; recovered by a new payment or cancelled."""
        sid = s["subscription_id"]
        s["status"] = "on_hold"
        at = self.emit("subscription.on_hold", at, s, "subscriptions", sid)
        started = at
        d = {"brand_id": "bnd_soak", "created_at": iso(started), "customer_id": cust["customer_id"],
             "status": "recovering", "subscription_id": sid, "trigger_state": "on_hold", "payment_id": None}
        at = self.emit("dunning.started", at, d, "dunning", (sid, iso(started)))
        if self.rng.random() < 0.6:
            p, at = self.pay(cust, s["recurring_pre_tax_amount"], s["currency"], at + timedelta(days=2),
                             sub=sid, charge="renewal", product=s["product_id"])
            d |= {"status": "recovered", "payment_id": p["payment_id"]}
            at = self.emit("dunning.recovered", at, d, "dunning", (sid, iso(started)))
            s["status"] = "active"
            return self.emit("subscription.active", at, s, "subscriptions", sid)
        at += timedelta(days=7)
        s |= {"status": "cancelled", "cancelled_at": iso(at), "cancelled_by": "merchant"}
        return self.emit("subscription.cancelled", at, s, "subscriptions", sid)

    def payout_run(self) -> None:
        """Weekly payouts per currency of what was settled; a few fail, then are retried."""
        week = START + timedelta(days=7, hours=6)
        settled = sorted((e.at, e.data) for e in self.events if e.type == "payment.succeeded")
        i = 0
        due: dict[str, int] = {}
        while week < START + timedelta(days=DAYS):
            while i < len(settled) and settled[i][0] < week:
                d = settled[i][1]
                due[d["currency"]] = due.get(d["currency"], 0) + d["total_amount"]
                i += 1
            for currency in sorted(due):
                if not due[currency]:
                    continue
                at = week + timedelta(minutes=self.rng.randint(0, 600))
                po = {"amount": due[currency], "business_id": BUSINESS, "chargebacks": 0, "created_at": iso(at),
                      "currency": currency, "fee": due[currency] // 100, "payment_method": "bank_transfer",
                      "payout_id": self.uid("pout"), "refunds": 0, "status": "not_initiated", "tax": 0,
                      "updated_at": iso(at), "name": f"Payout {currency}", "payout_document_url": None,
                      "remarks": None}
                key = po["payout_id"]
                for etype, status in [("payout.created", "not_initiated"), ("payout.in_progress", "in_progress")] + (
                        [("payout.on_hold", "on_hold"), ("payout.in_progress", "in_progress")]
                        if self.rng.random() < 0.1 else []):
                    po |= {"status": status, "updated_at": iso(at)}
                    at = self.emit(etype, at, po, "payouts", key)
                ok = self.rng.random() < 0.92
                po |= {"status": "success" if ok else "failed", "updated_at": iso(at),
                       "remarks": None if ok else "Bank rejected the transfer"}
                self.emit("payout.success" if ok else "payout.failed", at, po, "payouts", key)
                if ok:
                    due[currency] = 0
            week += timedelta(days=7)

    def unknown_types(self, k: int) -> None:
        """Types newer than the bundle: kept in the inbox (ignored), never dropped."""
        for j in range(k):
            at = START + timedelta(days=self.rng.uniform(0, DAYS))
            self.emit("invoice.finalized", at, {"invoice_id": f"inv_{j:05d}", "total": 1000, "currency": "USD"},
                      None, None)


def simulate(seed: int = 7, customers: int = 1000) -> Simulation:
    """The events of `customers` lifecycles plus payouts, and their ground truth."""
    b = _Business(seed)
    for i in range(customers):
        b.lifecycle(i)
    b.payout_run()
    b.unknown_types(max(1, customers // 200))
    return Simulation(seed, b.events, ground_truth(b))


# ---------------------------------------------------------------- ground truth

def ground_truth(b: _Business) -> Truth:
    t = Truth()
    for e in b.events:
        known = e.type.split(".")[0] in ("payment", "refund", "dispute", "subscription", "license_key", "payout",
                                         "credit", "abandoned_checkout", "dunning", "entitlement_grant")
        t.inbox[e.webhook_id] = "processed" if known else "ignored"
        for ch in channels_for(e.type):
            t.notifications.add((e.webhook_id, ch))
        family = e.type.split(".")[0]
        cust = e.data.get("customer") if family in CRM_FAMILIES else None
        if cust and cust.get("email"):
            t.contacts[cust["email"]] = cust["customer_id"]
            if family in NOTE_FAMILIES:
                t.notes[e.webhook_id] = cust["email"]
    last = {k: d for k, (_at, _w, d) in b.state.items()}
    destinations_truth(t, b.events, last)
    rows = t.tables
    for (table, key), d in sorted(last.items(), key=lambda kv: str(kv[0])):
        rows.setdefault(table, {})[key] = _row(table, d)
    # refunded_minor: succeeded refunds per payment
    for r in rows.get("refunds", {}).values():
        if r["status"] == "succeeded":
            rows["payments"][r["payment_id"]]["refunded_minor"] += r["amount_minor"]
    # customers: every payload that describes one (the description never changes here)
    cust_rows = rows.setdefault("customers", {})
    for e in b.events:
        c = e.data.get("customer")
        if isinstance(c, dict):
            cust_rows[c["customer_id"]] = {"email": c["email"], "name": c["name"]}
        elif e.data.get("customer_id") and e.data["customer_id"] not in cust_rows:
            cust_rows[e.data["customer_id"]] = {"email": None, "name": None}
    # MRR per currency over active subscriptions (documented formula of the mrr view)
    mrr: dict[str, list] = {}
    for s in rows.get("subscriptions", {}).values():
        if s["status"] == "active":
            m = Fraction(s["recurring_pre_tax_minor"] * s["quantity"] * PER_YEAR[s["payment_frequency_interval"]],
                         12 * s["payment_frequency_count"])
            acc = mrr.setdefault(s["currency"], [0, Fraction(0)])
            acc[0] += 1
            acc[1] += m
    t.mrr = {c: (n, to_major(v, c)) for c, (n, v) in sorted(mrr.items())}
    # net revenue per currency: succeeded payments - succeeded refunds - lost disputes
    net: dict[str, int] = {}
    for p in rows.get("payments", {}).values():
        if p["status"] == "succeeded":
            net[p["currency"]] = net.get(p["currency"], 0) + p["total_minor"]
    for r in rows.get("refunds", {}).values():
        if r["status"] == "succeeded":
            net[r["currency"]] = net.get(r["currency"], 0) - r["amount_minor"]
    for d in rows.get("disputes", {}).values():
        if d["status"] == "dispute_lost":
            net[d["currency"]] = net.get(d["currency"], 0) - d["amount_minor"]
    t.net = {c: to_major(v, c) for c, v in sorted(net.items())}
    return t


LIVE_SUBSCRIPTION = {"active", "on_hold", "past_due", "paused", "pending"}
ENDED_SUBSCRIPTION = {"cancelled", "expired", "failed"}
DISPUTE_DAYS = 4  # Dodo: "You have 4 days to respond to a dispute after creation"


def destinations_truth(t: Truth, events: list[Event], last: dict) -> None:
    """What the analytics, campaign and calendar destinations must hold in the end."""
    for e in events:
        cust = e.data.get("customer") if isinstance(e.data.get("customer"), dict) else {}
        who = cust.get("customer_id") or e.data.get("customer_id") or cust.get("email")
        if who:
            t.analytics[(e.type, who, iso(e.at))] = e.webhook_id
        if cust.get("email") or cust.get("name"):
            t.identifies[(who, iso(e.at))] = e.webhook_id
    live, ended, paid, failing, newest, emails = set(), set(), set(), set(), {}, {}
    for (table, key), d in last.items():
        if isinstance(d.get("customer"), dict):
            emails[d["customer"]["customer_id"]] = d["customer"]["email"]
    for (table, key), d in last.items():
        if table == "subscriptions":
            email = d["customer"]["email"]
            (live if d["status"] in LIVE_SUBSCRIPTION else ended if d["status"] in ENDED_SUBSCRIPTION
             else set()).add(email)
            if d["status"] in LIVE_SUBSCRIPTION:
                t.calendar[("renewal", key)] = d["next_billing_date"][:10]
            if d["status"] in ("on_hold", "past_due"):
                failing.add(email)
        elif table == "payments":
            email = d["customer"]["email"]
            paid.update([email] if d["status"] == "succeeded" else [])
            newest[email] = max(newest.get(email, ("", "", "")), (d["created_at"], key, d["status"]))
        elif table == "dunning" and d["status"] == "recovering":
            failing.add(emails[d["customer_id"]])
        elif table == "disputes" and d["dispute_status"] in ("dispute_opened", "dispute_challenged"):
            opened = datetime.fromisoformat(d["created_at"].replace("Z", "+00:00"))
            t.calendar[("dispute", key)] = (opened + timedelta(days=DISPUTE_DAYS)).date().isoformat()
    # payment failing (unless churned): a subscription held, a dunning not recovered, or the newest payment failed
    failing.update(email for email, (_at, _id, status) in newest.items() if status == "failed")
    for e in events:
        email = (e.data.get("customer") or {}).get("email") if isinstance(e.data.get("customer"), dict) else None
        if email:
            lifecycle = ("dodo-customer" if email in live or (email not in ended and email in paid)
                         else "dodo-churned" if email in ended else None)
            failing_tag = "dodo-payment-failing" if email in failing and lifecycle != "dodo-churned" else None
            t.audience[email] = frozenset({lifecycle, failing_tag} - {None})


def _row(table: str, d: dict) -> dict:
    """The columns the soak compares, from the object's last state."""
    if table == "payments":
        return {"status": d["status"], "currency": d["currency"], "total_minor": d["total_amount"],
                "customer_id": d["customer"]["customer_id"], "refunded_minor": 0}
    if table == "refunds":
        return {"status": d["status"], "currency": d["currency"], "amount_minor": d["amount"],
                "payment_id": d["payment_id"]}
    if table == "disputes":
        return {"status": d["dispute_status"], "currency": d["currency"], "amount_minor": int(d["amount"])}
    if table == "subscriptions":
        return {"status": d["status"], "product_id": d["product_id"], "currency": d["currency"],
                "recurring_pre_tax_minor": d["recurring_pre_tax_amount"], "quantity": d["quantity"],
                "payment_frequency_interval": d["payment_frequency_interval"],
                "payment_frequency_count": d["payment_frequency_count"]}
    if table == "license_keys":
        return {"status": d["status"], "customer_id": d["customer_id"]}
    if table == "payouts":
        return {"status": d["status"], "currency": d["currency"], "amount_minor": d["amount"]}
    if table == "credit_ledger_entries":
        return {"transaction_type": d["transaction_type"], "amount": d["amount"], "balance_after": d["balance_after"]}
    if table == "abandoned_checkouts":
        return {"status": d["status"], "recovered_payment_id": d["recovered_payment_id"]}
    if table == "dunning":
        return {"status": d["status"], "payment_id": d["payment_id"]}
    if table == "entitlement_grants":
        return {"status": d["status"], "customer_id": d["customer_id"]}
    raise ValueError(table)
