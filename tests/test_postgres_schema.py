"""Migrations (idempotent, concurrent) and the revenue views, checked against a model."""
from __future__ import annotations

import threading
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

from f.dodo.lib import schema as migrations
from f.dodo.lib import store
from f.dodo.lib.money import EXPONENTS
from tests.conftest import Db, drop_schema, random_schema
from tests.postgres_events import EXP, Model, make_stream

ALL = list(migrations.MIGRATIONS)


def test_migrations_apply_once_and_are_recorded(make_db):
    handle = make_db(migrate=False)
    assert migrations.applied(handle.conn, handle.schema) == []
    assert migrations.migrate(handle.conn, handle.schema) == ALL
    assert migrations.migrate(handle.conn, handle.schema) == []
    assert migrations.applied(handle.conn, handle.schema) == [int(n[1:4]) for n in ALL]


def test_concurrent_migrations_apply_each_version_once(make_db):
    schema = random_schema()
    conns = [make_db(schema, migrate=False).conn for _ in range(4)]
    results, errors = [], []
    barrier = threading.Barrier(len(conns))

    def run(conn):
        try:
            barrier.wait()
            results.append(migrations.migrate(conn, schema))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    assert sorted(results, key=len) == [[], [], [], ALL]
    assert migrations.applied(conns[0], schema) == [int(n[1:4]) for n in ALL]


def test_schema_names_are_checked():
    for bad in ["Dodo", "x; DROP SCHEMA public", "1abc", "", "a" * 64, 'a"b']:
        with pytest.raises(ValueError):
            migrations.check_schema(bad)


def test_currency_table_and_major_units(db):
    assert dict(db.conn.execute("SELECT code, exponent FROM currencies")) == EXPONENTS
    got = db.conn.execute("SELECT to_major(1234, 'USD')::text, to_major(1000, 'JPY')::text, "
                          "to_major(1234, 'KWD')::text, to_major(5, 'ZZZ')").fetchone()
    assert got == ("12.34", "1000", "1.234", None)


# -- views against the model ----------------------------------------------------------
def _day(ts) -> date:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.astimezone(timezone.utc).date()


def _major(minor, cur) -> Decimal:
    e = EXP[cur]
    return (Decimal(minor) / Decimal(10) ** e).quantize(Decimal(1).scaleb(-e), rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def recorded(pg_url):
    """A schema holding the random stream (recorded once, in shuffled order) and its model."""
    from f.dodo.lib import db as dblib

    unique = make_stream(500, seed=3)
    schema = random_schema("views")
    conn = dblib.connect(pg_url, schema, migrate=True)
    for wid, env in reversed(unique):
        assert store.record_delivery(conn, env, wid)["status"] == "recorded"
    yield Db(pg_url, schema, conn), Model(unique)
    conn.close()
    drop_schema(pg_url, schema)


def test_mrr_and_arr(recorded):
    db, model = recorded
    expected = model.mrr()
    active = defaultdict(int)
    for s in model.state("subscriptions").values():
        active[s["currency"]] += s["status"] == "active"
    rows = {r[0]: r[1:] for r in db.conn.execute("SELECT currency, active_subscriptions, mrr FROM mrr")}
    assert rows == {c: (active[c], _major(m, c)) for c, m in expected.items()}
    arr = {r[0]: r[1] for r in db.conn.execute("SELECT currency, arr FROM arr")}
    assert arr == {c: _major(12 * m, c) for c, m in expected.items()}
    assert expected  # the stream does hold active subscriptions


def test_revenue_daily_is_payments_minus_refunds_minus_lost_disputes(recorded):
    db, model = recorded
    want = defaultdict(lambda: [0, 0, 0, 0])  # payments, gross, refunds, lost
    payments = model.state("payments")
    for p in payments.values():
        if p["status"] == "succeeded":
            w = want[(_day(p["created_at"]), p["currency"])]
            w[0] += 1
            w[1] += p["total_amount"]
    for r in model.state("refunds").values():
        if r["status"] == "succeeded":
            want[(_day(r["created_at"]), r["currency"])][2] += r["amount"]
    for k, d in model.state("disputes").items():
        if d["dispute_status"] == "dispute_lost":
            want[(_day(model.when("disputes", k)), d["currency"])][3] += int(d["amount"])
    rows = {(r[0], r[1]): list(r[2:]) for r in db.conn.execute(
        "SELECT day, currency, payments, gross_minor, refunds_minor, disputes_lost_minor, net_minor, net "
        "FROM revenue_daily")}
    assert rows == {k: [n, g, rf, lo, g - rf - lo, _major(g - rf - lo, k[1])] for k, (n, g, rf, lo) in want.items()}
    assert any(v[3] for v in want.values()) and any(v[2] for v in want.values())


def test_customer_lifetime_value(recorded):
    db, model = recorded
    payments = model.state("payments")
    want = defaultdict(lambda: [0, 0, 0])  # gross, refunds, lost
    for p in payments.values():
        if p["status"] == "succeeded":
            want[(p["customer"]["customer_id"], p["currency"])][0] += p["total_amount"]
    for table, field, ok in (("refunds", "amount", "succeeded"), ("disputes", "amount", "dispute_lost")):
        for x in model.state(table).values():
            status = x.get("status") or x.get("dispute_status")
            p = payments.get(x["payment_id"])
            if status == ok and p is not None:
                key = (p["customer"]["customer_id"], p["currency"])
                if key in want:
                    want[key][1 if table == "refunds" else 2] += int(x[field])
    rows = {(r[0], r[1]): r[2:] for r in db.conn.execute(
        "SELECT customer_id, currency, gross_minor, net_minor, lifetime_value, email FROM customer_lifetime_value")}
    assert rows == {k: (g, g - rf - lo, _major(g - rf - lo, k[1]), model.customers[k[0]]["email"])
                    for k, (g, rf, lo) in want.items()}


def test_subscription_days(recorded):
    db, model = recorded
    history = sorted(model.history, key=lambda h: (h[3], h[1]))
    first, today = _day(history[0][3]), datetime.now(timezone.utc).date()
    churn = {"cancelled", "expired", "failed"}
    first_active: dict[str, date] = {}
    for sub, _, status, at in history:
        if status == "active":
            first_active.setdefault(sub, _day(at))
    want, prev, state, i = {}, {}, {}, 0
    day = first
    while day <= max(today, _day(history[-1][3])):
        while i < len(history) and _day(history[i][3]) <= day:
            state[history[i][0]] = history[i][2]
            i += 1
        want[day] = (sum(s == "active" for s in state.values()),
                     sum(d == day for d in first_active.values()),
                     sum(1 for k, s in state.items() if s in churn and k in prev and prev[k] not in churn))
        prev, day = dict(state), day + timedelta(days=1)
    rows = {r[0]: r[1:] for r in db.conn.execute("SELECT day, active, new, churned FROM subscription_days")}
    assert rows == want
    assert sum(v[2] for v in want.values()) > 0 and sum(v[1] for v in want.values()) > 0
