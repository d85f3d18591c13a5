"""Fan-out cost per event: CPU µs spent in the bundle's own code, network wait excluded.

Measured with time.thread_time() of the calling thread, so the local stand-ins (Slack
and Twilio on pytest-httpserver, SMTP on aiosmtpd, all in other threads) and waiting on
sockets or Postgres are not counted; what is counted is routing, rendering, the CRM
mapping, the ledger's client side and the HTTP/SMTP client work. Baseline in the same
run: json.dumps of the same normalised events, timed in every round next to the others
(interleaved rounds); each figure is the median over the rounds and each ratio the
median of the per-round ratios.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import statistics
import time
import uuid

from f.dodo.lib import crm, db, render, routing
from f.dodo.lib.normalizer import normalize_event
from f.dodo.lib.notify import Transports, notify
from tests.fixture_data import all_deliveries


def _cpu_us(fn, items) -> float:
    """One pass, in CPU µs per item of this thread."""
    start = time.thread_time_ns()
    for item in items:
        fn(item)
    return (time.thread_time_ns() - start) / len(items) / 1000


def _medians(times: dict[str, list[float]]) -> tuple[dict, dict]:
    """(median µs of each, median of its per-round ratios to the baseline's)."""
    us = {k: round(statistics.median(v), 2) for k, v in times.items()}
    ratio = {k: round(statistics.median(t / b for t, b in zip(v, times["baseline"])), 1)
             for k, v in times.items() if k != "baseline"}
    return us, ratio


def _events() -> list[dict]:
    out = []
    for name, delivery in all_deliveries():
        try:
            out.append(normalize_event(json.loads(delivery["body"]), delivery["headers"]["webhook-id"]))
        except Exception:  # noqa: BLE001 - a fixture the normaliser rejects is not ours to bench
            continue
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fanout_us(events: list[dict], n: int, rounds: int) -> dict[str, list[float]]:
    """notify() on Postgres + Slack/Twilio/SMTP stand-ins: every channel of a busy rule; per
    round, json.dumps of the round's events, their first notify() and its replay."""
    from aiosmtpd.controller import Controller
    from pytest_httpserver import HTTPServer

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    http = HTTPServer(host="127.0.0.1", port=_free_port())
    http.expect_request("/api/chat.postMessage").respond_with_json({"ok": True, "ts": "1.1"})
    http.expect_request(re.compile(r"/2010-04-01/Accounts/.*/Messages.json")).respond_with_json(
        {"sid": "SM1"}, status=201)
    http.start()
    smtp_port = _free_port()
    smtp = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    from local_runner.pg_server import start_server

    server = start_server()  # DATABASE_URL, else the system or wheel Postgres
    dsn = server.url
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = db.connect(dsn, schema, migrate=True)
    try:
        rules = routing.load({"email_to": ["ops@shop.example"], "sms_to": ["+15557654321"],
                              "rules": [{"match": "*", "channels": ["slack", "email", "sms"]}]})
        t = Transports(slack={"token": "xoxb-bench"}, smtp={"host": "127.0.0.1", "port": smtp_port},
                       twilio={"accountSid": "AC" + "0" * 32, "token": "t", "from_number": "+15550001111"},
                       slack_api=http.url_for("/api"), twilio_api=http.url_for(""))
        send = lambda ev: notify(conn, ev, rules, t)  # noqa: E731
        send(dict(events[0], webhook_id="bench_warm"))
        times: dict[str, list[float]] = {"baseline": [], "fanout": [], "replay": []}
        for r in range(rounds):
            items = [dict(events[i % len(events)], webhook_id=f"bench_{r}_{i}") for i in range(n)]
            times["baseline"].append(_cpu_us(json.dumps, items))
            times["fanout"].append(_cpu_us(send, items))
            times["replay"].append(_cpu_us(send, items))  # replays: the ledger says every channel is done
        return times
    finally:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
        smtp.stop()
        http.stop()
        server.stop()


def run(quick: bool) -> dict:
    events = _events()
    n = 300 if quick else 3000
    rounds = 3 if quick else 7
    items = [events[i % len(events)] for i in range(n)]
    with_email = [e for e in items if e.get("customer_email")]  # the CRM skips the others
    rules = routing.load(None)

    def render_route(ev):
        rules.route(ev["event_type"])
        render.slack_message(ev), render.email_message(ev), render.sms_message(ev)

    def crm_map(ev):
        crm.contact_properties(ev)
        crm.note_body(ev)

    passes = {"baseline": (json.dumps, items), "render": (render_route, items), "crm": (crm_map, with_email)}
    for fn, some in passes.values():
        fn(some[0])
    times: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(rounds):  # interleaved: each round times the baseline and both, on the same events
        for name, (fn, some) in passes.items():
            times[name].append(_cpu_us(fn, some))
    us, ratio = _medians(times)
    fan_us, fan_ratio = _medians(_fanout_us(events, 100 if quick else 500, rounds))
    baseline = us["baseline"]
    figures = {"events": n, "event_types": len(events), "rounds": rounds, "json_dumps_us": baseline,
               "route_render_3_channels_us": us["render"], "crm_mapping_us": us["crm"],
               "crm_events_with_email": len(with_email), "fanout_json_dumps_us": fan_us["baseline"],
               "fanout_3_channels_us": fan_us["fanout"], "replay_skip_us": fan_us["replay"]}
    fan_base = f"{fan_us['baseline']} µs (same rounds)"
    rows = [
        {"name": f"json.dumps(normalised event) (baseline; median of {rounds} interleaved rounds)",
         "measured": f"{baseline} µs/event"},
        {"name": "route + render Slack/email/SMS", "measured": f"{us['render']} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": ratio["render"]},
        {"name": "HubSpot contact + note mapping", "measured": f"{us['crm']} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": ratio["crm"]},
        {"name": "notify(): ledger + Slack + SMTP + Twilio, client CPU", "measured": f"{fan_us['fanout']} µs/event",
         "baseline_text": fan_base, "ratio": fan_ratio["fanout"]},
        {"name": "notify() replay (all channels already sent)", "measured": f"{fan_us['replay']} µs/event",
         "baseline_text": fan_base, "ratio": fan_ratio["replay"]},
    ]
    return {"name": "fanout", "figures": figures, "baseline": baseline,
            "ratio": fan_ratio["fanout"], "rows": rows,
            "method": "time.thread_time of the calling thread (stand-ins run in other threads; waits excluded)"}
