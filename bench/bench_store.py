"""Record step throughput: events/s through the entry flow's record step on one connection,
against bare single-row INSERT transactions (webhook_id primary key, payload jsonb: the
same delivery the inbox keeps) of the same events on the same server in the same run:
the physical limit of one transaction per event. Measured on a durable server (fsync and
synchronous commit on, as in production) and on the fast throw-away server the tests use
(fsync and synchronous commit off: commits cost nothing, so the ratio is pure CPU).
DATABASE_URL, when set, is used as the only server.

The record step is what ships: one `SELECT <schema>.record_delivery($1::jsonb)` (migration
v050, the PostgreSQL script f/dodo/record_delivery.pg.sql) on a connection with the
server's default search_path, with the call the preprocessor builds
(`record_call.build_call`, made before the timed loop: its CPU is the preprocessor's,
which bench_coldstart counts).

A third loop measures the floor of the record step: the three rows the guarantees need
(the inbox row, the entity row with its data, the customer row, into copies of the real
tables with all their indexes) written by one plain INSERT statement of fresh rows: no
duplicate check, no ordering, no upsert, no row building. No record step can beat it.

Two mixes go through the record step. The tests' stream (tests/postgres_events.py)
re-delivers the same 90 payments, 30 subscriptions and 12 customers with a new email on
every event: almost every upsert updates a row, the worst case. The realistic mix is the
soak's traffic (local_runner/simulate.py) in event-time order, each event once: mostly
new payments and subscriptions, customers who keep their email, renewals, a few refunds
and disputes; each round takes the next slice of it, so no event repeats.

The loops alternate in many short rounds; each ratio is the median over rounds of the
round's ratio to the bare INSERTs of the same round (the machine's speed drifts between
rounds, not within one). WAL bytes per event are reported beside the rates.
"""
from __future__ import annotations

import json
import os
import statistics
import time
import uuid

from f.dodo.lib import db, store
from f.dodo.lib.record_call import build_call, for_record_delivery
from f.dodo.lib.normalizer import normalize_event
from local_runner.pg_server import start_server
from local_runner.simulate import simulate
from tests.postgres_events import make_stream


def _events(n: int, tag: str) -> list[dict]:
    return [normalize_event(env, f"{wid}_{tag}") for wid, env in make_stream(n, seed=5)]


def _realistic(n: int) -> tuple[list[dict], dict[str, str]]:
    """The first `n` events of the soak's traffic in event-time order, normalised, and
    the inbox status each must end with."""
    sim = simulate(seed=5, customers=max(200, n // 5))  # ~7 events a customer
    order = sorted(sim.events, key=lambda e: (e.at, e.webhook_id))[:n]
    assert len(order) == n, (len(order), n)
    return [normalize_event(e.envelope, e.webhook_id) for e in order], sim.truth.inbox


def _round(conn, fn, events) -> tuple[float, float]:
    """(events/s, WAL bytes per event) of one round."""
    lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    start = time.perf_counter()
    for e in events:
        fn(e)
    rate = len(events) / (time.perf_counter() - start)
    wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn]).fetchone()[0]
    return rate, float(wal) / len(events)


_FLOOR = b"""
WITH inbox AS (
    INSERT INTO floor_webhook_events (webhook_id, event_type, category, business_id, entity_id, customer_id,
                                      occurred_at, payload, status, processed_at)
    VALUES (%(w)s, %(type)s, %(cat)s, %(bus)s, %(ent)s, %(cus)s, %(at)s, %(payload)s, 'processed', now())
), entity AS (
    INSERT INTO floor_payments (payment_id, business_id, customer_id, status, currency, total_minor, total,
                                event_type, event_at, event_webhook_id, data)
    VALUES (%(w)s, %(bus)s, %(cus)s, 'succeeded', 'USD', 1234, 12.34, %(type)s, %(at)s, %(w)s, %(data)s)
)
INSERT INTO floor_customers (customer_id, business_id, email, name, first_seen_at, event_at, event_webhook_id)
VALUES (%(w)s, %(bus)s, %(email)s, %(name)s, %(at)s, %(at)s, %(w)s)"""


def _floor_params(e: dict) -> dict:
    c = e.get("data", {}).get("customer") or {}
    return {"w": e["webhook_id"], "type": e["event_type"], "cat": e["category"], "bus": e["business_id"],
            "ent": e["entity_id"], "cus": e["customer_id"], "at": e["occurred_at"],
            "payload": db.Json(store.delivery_of(e)), "data": db.Json(e["data"]),
            "email": c.get("email"), "name": c.get("name")}


def _measure(url: str, n: int, rounds: int) -> dict:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = db.connect(url, schema, migrate=True)
    conn.execute("CREATE TABLE bare (webhook_id text PRIMARY KEY, payload jsonb NOT NULL)")
    for t in ("webhook_events", "payments", "customers"):
        conn.execute(f"CREATE TABLE floor_{t} (LIKE {t} INCLUDING ALL)")
    insert = b"INSERT INTO bare (webhook_id, payload) VALUES (%s, %s)"

    def bare(e: dict) -> None:
        conn.execute(insert, [e["webhook_id"], db.Json(store.delivery_of(e))], prepare=True)

    plain = db.connect(url, "public", check=False)  # the worker's connection: the role's default search_path
    statement = f"SELECT {db.ident(schema)}.record_delivery(%s::jsonb)".encode()

    def calls(events: list[dict]) -> list[str]:
        """The record step's argument for each event, as the preprocessor builds it (JSON text)."""
        return [json.dumps(for_record_delivery(build_call(e))) for e in events]

    def record(call: str) -> None:
        plain.execute(statement, [call], prepare=True)

    def floor(e: dict) -> None:
        conn.execute(_FLOOR, _floor_params(e), prepare=True)

    warm = 200
    stream, inbox = _realistic(warm + n * rounds)
    base, rec, low, real = [], [], [], []
    try:
        warm_up = _events(warm, "warm")
        for e, c in zip(warm_up, calls(warm_up)):  # plans cached, pages in memory
            bare(e)
            record(c)
            floor(e)
        for c in calls(stream[:warm]):
            record(c)
        for r in range(rounds):
            base.append(_round(conn, bare, _events(n, f"b{r}")))
            rec.append(_round(conn, record, calls(_events(n, f"s{r}"))))
            low.append(_round(conn, floor, _events(n, f"f{r}")))
            real.append(_round(conn, record, calls(stream[warm + r * n:warm + (r + 1) * n])))
        statuses = {row[0] for row in conn.execute(
            "SELECT DISTINCT status FROM webhook_events WHERE webhook_id NOT LIKE 'msg_soak_%'")}
        assert statuses == {"processed"}, statuses
        got = dict(conn.execute("SELECT webhook_id, status FROM webhook_events WHERE webhook_id LIKE 'msg_soak_%'"))
        assert got == {e["webhook_id"]: inbox[e["webhook_id"]] for e in stream}, "realistic mix: inbox differs"
    finally:
        plain.close()
        conn.execute(f"DROP SCHEMA {db.ident(schema)} CASCADE")
        conn.close()

    def median(rows, i=0):
        return statistics.median(r[i] for r in rows)

    def ratio(rows):  # the median of the per-round ratios to the same round's bare INSERTs
        return round(statistics.median(x[0] / b[0] for x, b in zip(rows, base)), 3)

    return {"record_event_per_s": round(median(rec)), "bare_insert_per_s": round(median(base)), "ratio": ratio(rec),
            "floor_per_s": round(median(low)), "floor_ratio": ratio(low),
            "wal_bytes_per_event": round(median(rec, 1)), "wal_bytes_per_bare_insert": round(median(base, 1)),
            "wal_bytes_per_floor": round(median(low, 1)), "rounds": rounds, "events_per_round": n,
            "realistic_per_s": round(median(real)), "realistic_ratio": ratio(real),
            "wal_bytes_per_realistic_event": round(median(real, 1))}


def run(quick: bool) -> dict:
    n, rounds = (300, 4) if quick else (500, 10)
    servers = {"given": None} if os.environ.get("DATABASE_URL") else {"durable": True, "fast": False}
    figures = {}
    for name, durable in servers.items():
        with start_server(durable=bool(durable)) as pg:
            figures[name] = _measure(pg.url, n, rounds)
    main = figures.get("durable") or figures["given"]
    rows = [{"name": f"bench_store ({k})", "measured": f"{v['record_event_per_s']} events/s "
                                                       f"(floor of 3 plain inserts: {v['floor_per_s']}/s, {v['floor_ratio']})",
             "baseline_text": f"{v['bare_insert_per_s']} INSERT tx/s", "ratio": v["ratio"]}
            for k, v in figures.items()]
    rows += [{"name": f"bench_store realistic mix ({k})", "measured": f"{v['realistic_per_s']} events/s",
              "baseline_text": f"{v['bare_insert_per_s']} INSERT tx/s", "ratio": v["realistic_ratio"]}
             for k, v in figures.items()]
    return {"name": "bench_store", "figures": figures, "baseline": main["bare_insert_per_s"],
            "ratio": main["ratio"], "goal": 0.7, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
