"""Record step throughput: events/s through store.record_event on one connection,
against bare single-row INSERT transactions (webhook_id, payload jsonb: the same
delivery the inbox keeps) of the same events on the same server in the same run: the physical limit of one transaction per
event. Measured on a durable server (fsync and synchronous commit on, as in
production) and on the fast throw-away server the tests use (fsync off).
DATABASE_URL, when set, is used as the only server.
"""
from __future__ import annotations

import os
import time
import uuid

from psycopg import sql
from psycopg.types.json import Jsonb

from f.dodo.lib import db, store
from f.dodo.lib.normalizer import normalize_event
from local_runner.pg_server import start_server
from tests.postgres_events import make_stream


def _events(n: int, tag: str) -> list[dict]:
    out = []
    for wid, env in make_stream(n, seed=5):
        out.append(normalize_event(env, f"{wid}_{tag}"))
    return out


def _rate(fn, events) -> float:
    start = time.perf_counter()
    for e in events:
        fn(e)
    return len(events) / (time.perf_counter() - start)


def _measure(url: str, n: int, rounds: int) -> dict:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = db.connect(url, schema)
    conn.execute("CREATE TABLE bare (webhook_id text PRIMARY KEY, payload jsonb NOT NULL)")
    insert = "INSERT INTO bare (webhook_id, payload) VALUES (%s, %s)"
    base, rec = [], []
    try:
        for r in range(rounds):  # interleaved, best of each: the machine is shared
            events = _events(n, f"b{r}")
            base.append(_rate(lambda e: conn.execute(insert, [e["webhook_id"], Jsonb(store.delivery_of(e))],
                                                       prepare=True), events))
            events = _events(n, f"s{r}")
            rec.append(_rate(lambda e: store.record_event(conn, e), events))
        statuses = {row[0] for row in conn.execute("SELECT DISTINCT status FROM webhook_events")}
        assert statuses == {"processed"}, statuses
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        conn.close()
    b, s = max(base), max(rec)
    return {"record_event_per_s": round(s), "bare_insert_per_s": round(b), "ratio": round(s / b, 3)}


def run(quick: bool) -> dict:
    n, rounds = (300, 2) if quick else (1500, 3)
    servers = {"given": None} if os.environ.get("DATABASE_URL") else {"durable": True, "fast": False}
    figures = {}
    for name, durable in servers.items():
        with start_server(durable=bool(durable)) as pg:
            figures[name] = _measure(pg.url, n, rounds)
    main = figures.get("durable") or figures["given"]
    rows = [{"name": f"bench_store ({k})", "measured": f"{v['record_event_per_s']} events/s",
             "baseline_text": f"{v['bare_insert_per_s']} INSERT tx/s", "ratio": v["ratio"]}
            for k, v in figures.items()]
    return {"name": "bench_store", "figures": figures, "baseline": main["bare_insert_per_s"],
            "ratio": main["ratio"], "goal": 0.7, "events_per_round": n, "rows": rows}


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick=True), indent=2))
