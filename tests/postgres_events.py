"""A random stream of Dodo deliveries for the Postgres tests and bench, and an
independent model of what applying them once, in event-time order, must give.

Events are the committed fixtures' envelopes with ids, statuses, amounts, customers
and timestamps changed; timestamps come from few slots so ties are common.
"""
from __future__ import annotations

import copy
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.fixture_data import envelope

BASE = datetime(2026, 3, 1, tzinfo=timezone.utc)
CURRENCIES = ["USD", "JPY", "KWD", "EUR"]
EXP = {"USD": 2, "JPY": 0, "KWD": 3, "EUR": 2}
PER_YEAR = {"Day": 365, "Week": 52, "Month": 12, "Year": 1}


def _ts(rng: random.Random) -> str:
    return (BASE + timedelta(minutes=30 * rng.randint(0, 400))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_stream(n_unique: int = 700, seed: int = 7) -> list[tuple[str, dict]]:
    """`n_unique` distinct deliveries as (webhook_id, envelope)."""
    rng = random.Random(seed)
    customers = [f"cus_{i:04d}" for i in range(12)]
    payments = {f"pay_{i:04d}": rng.choice(CURRENCIES) for i in range(90)}
    refunds = {f"ref_{i:04d}": rng.choice(list(payments)) for i in range(40)}
    disputes = {f"dsp_{i:04d}": rng.choice(list(payments)) for i in range(20)}
    subs = {f"sub_{i:04d}": (rng.choice(CURRENCIES), rng.choice(list(PER_YEAR)), rng.randint(1, 3)) for i in range(30)}
    kinds = ["payment"] * 5 + ["refund"] * 2 + ["dispute"] + ["subscription"] * 3 + ["license_key"]
    out = []
    for _ in range(n_unique):
        kind, wid, ts = rng.choice(kinds), "msg_%024x" % rng.getrandbits(96), _ts(rng)
        cid = rng.choice(customers)
        customer = {"customer_id": cid, "email": f"{cid}+{rng.randint(0, 99)}@example.com",
                    "name": f"Name {rng.randint(0, 99)}", "phone_number": None, "metadata": {}}
        if kind == "payment":
            pid = rng.choice(list(payments))
            status = rng.choice(["succeeded", "succeeded", "failed", "processing"])
            env = envelope("payment.succeeded")
            env["type"] = f"payment.{status}"
            env["data"].update(payment_id=pid, status=status, currency=payments[pid], settlement_currency=payments[pid],
                               total_amount=rng.randint(100, 100000), customer=customer, created_at=ts)
        elif kind == "refund":
            rid = rng.choice(list(refunds))
            status = rng.choice(["succeeded", "failed"])
            env = envelope("refund.succeeded")
            env["type"] = f"refund.{status}"
            env["data"].update(refund_id=rid, payment_id=refunds[rid], status=status, amount=rng.randint(1, 5000),
                               currency=payments[refunds[rid]], customer=customer, created_at=ts)
        elif kind == "dispute":
            did = rng.choice(list(disputes))
            status = rng.choice(["opened", "lost", "won"])
            env = envelope("dispute.lost")
            env["type"] = f"dispute.{status}"
            env["data"].update(dispute_id=did, payment_id=disputes[did], dispute_status=f"dispute_{status}",
                               amount=str(rng.randint(1, 5000)), currency=payments[disputes[did]], customer=customer)
        elif kind == "subscription":
            sid = rng.choice(list(subs))
            cur, interval, count = subs[sid]
            status = rng.choice(["active", "active", "on_hold", "cancelled", "expired"])
            env = envelope("subscription.active")
            env["type"] = f"subscription.{status}"
            discounts = [] if rng.random() < 0.6 else [
                {"amount": rng.choice([1000, 2500, 540]), "type": "percentage", "cycles_remaining": rng.choice([None, 0, 2]),
                 "discount_id": "dsc_1", "business_id": "bus_1", "code": "X", "created_at": ts, "metadata": {},
                 "position": 0, "preserve_on_plan_change": False, "restricted_to": [], "times_used": 1}]
            env["data"].update(subscription_id=sid, status=status, currency=cur, payment_frequency_interval=interval,
                               payment_frequency_count=count, quantity=rng.randint(1, 4),
                               recurring_pre_tax_amount=rng.randint(100, 50000), customer=customer, discounts=discounts)
        else:
            lid = f"lic_{rng.randint(0, 9):04d}"
            env = envelope("license_key.created")
            env["data"].update(id=lid, customer_id=cid, status=rng.choice(["active", "disabled"]))
        env["timestamp"] = ts
        out.append((wid, env))
    return out


def with_duplicates(unique: list, total: int, seed: int = 11) -> list:
    """`unique` plus copies of random members up to `total` deliveries, shuffled."""
    rng = random.Random(seed)
    stream = list(unique) + [copy.deepcopy(rng.choice(unique)) for _ in range(total - len(unique))]
    rng.shuffle(stream)
    return stream


def _key(wid: str, env: dict) -> tuple:
    return (datetime.fromisoformat(env["timestamp"].replace("Z", "+00:00")), wid)


class Model:
    """The state of applying each distinct delivery once, in (event time, webhook_id) order."""

    def __init__(self, unique: list):
        self.events = sorted(unique, key=lambda e: _key(*e))
        self.entities: dict[str, dict] = defaultdict(dict)   # table -> id -> (wid, env)
        self.customers: dict[str, dict] = {}
        self.history: set[tuple] = set()
        ids = {"payment": ("payments", "payment_id"), "refund": ("refunds", "refund_id"),
               "dispute": ("disputes", "dispute_id"), "subscription": ("subscriptions", "subscription_id"),
               "license_key": ("license_keys", "id")}
        for wid, env in self.events:  # later in order = newer: plain overwrite
            table, key = ids[env["type"].split(".")[0]]
            d = env["data"]
            self.entities[table][d[key]] = (wid, env)
            if isinstance(d.get("customer"), dict):
                self.customers[d["customer"]["customer_id"]] = d["customer"]
            if table == "subscriptions":
                self.history.add((d["subscription_id"], wid, d["status"], _key(wid, env)[0]))

    def state(self, table: str) -> dict[str, dict]:
        return {k: env["data"] for k, (wid, env) in self.entities[table].items()}

    def when(self, table: str, key: str) -> datetime:
        wid, env = self.entities[table][key]
        return _key(wid, env)[0]

    def refunded(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.state("refunds").values():
            if r["status"] == "succeeded":
                out[r["payment_id"]] += r["amount"]
        return dict(out)

    def mrr(self) -> dict[str, Decimal]:
        """Per currency, exact monthly amount in minor units."""
        out: dict[str, Decimal] = defaultdict(Decimal)
        for s in self.state("subscriptions").values():
            if s["status"] != "active":
                continue
            mult = Decimal(1)
            for disc in s.get("discounts") or []:
                if disc["type"] == "percentage" and (disc["cycles_remaining"] is None or disc["cycles_remaining"] > 0):
                    mult *= 1 - Decimal(disc["amount"]) / 10000
            out[s["currency"]] += (Decimal(s["recurring_pre_tax_amount"]) * s["quantity"] * mult
                                   * PER_YEAR[s["payment_frequency_interval"]] / (12 * s["payment_frequency_count"]))
        return dict(out)
