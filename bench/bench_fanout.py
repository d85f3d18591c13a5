"""Fan-out cost per event: CPU µs spent in the bundle's own code, network wait excluded.

Measured with time.thread_time() of the calling thread, so the local stand-ins (Slack
and Twilio on pytest-httpserver, SMTP on aiosmtpd, all in other threads) and waiting on
sockets or Postgres are not counted; what is counted is routing, rendering, the CRM
mapping, the ledger's client side and the HTTP/SMTP client work. Baseline in the same
run: json.dumps of the same normalised event.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import uuid

from f.dodo.lib import crm, db, render, routing
from f.dodo.lib.normalizer import normalize_event
from f.dodo.lib.notify import Transports, notify
from tests.fixture_data import all_deliveries


def _cpu_us(fn, items, repeats: int) -> float:
    """Best of `repeats` passes, in CPU µs per item of this thread."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time_ns()
        for item in items:
            fn(item)
        best = min(best, (time.thread_time_ns() - start) / len(items) / 1000)
    return round(best, 2)


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


def _fanout_us(events: list[dict], n: int) -> dict:
    """notify() on Postgres + Slack/Twilio/SMTP stand-ins: every channel of a busy rule."""
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
        items = [dict(events[i % len(events)], webhook_id=f"bench_{i}") for i in range(n)]
        start = time.thread_time_ns()
        for ev in items:
            notify(conn, ev, rules, t)
        first = (time.thread_time_ns() - start) / n / 1000
        start = time.thread_time_ns()
        for ev in items:  # replays: the ledger says every channel is done
            notify(conn, ev, rules, t)
        replay = (time.thread_time_ns() - start) / n / 1000
        return {"fanout_3_channels_us": round(first, 1), "replay_skip_us": round(replay, 1)}
    finally:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
        smtp.stop()
        http.stop()
        server.stop()


def run(quick: bool) -> dict:
    events = _events()
    n = 300 if quick else 3000
    repeats = 2 if quick else 5
    items = [events[i % len(events)] for i in range(n)]
    rules = routing.load(None)

    def render_route(ev):
        rules.route(ev["event_type"])
        render.slack_message(ev), render.email_message(ev), render.sms_message(ev)

    def crm_map(ev):
        crm.contact_properties(ev)
        crm.note_body(ev)

    for fn in (json.dumps, render_route, crm_map):
        fn(items[0])
    baseline = _cpu_us(json.dumps, items, repeats)
    rendered = _cpu_us(render_route, items, repeats)
    with_email = [e for e in items if e.get("customer_email")]  # the CRM skips the others
    mapped = _cpu_us(crm_map, with_email, repeats)
    figures = {"events": n, "event_types": len(events), "json_dumps_us": baseline,
               "route_render_3_channels_us": rendered, "crm_mapping_us": mapped,
               "crm_events_with_email": len(with_email)}
    figures |= _fanout_us(events, 100 if quick else 500)
    fan = figures["fanout_3_channels_us"]
    rows = [
        {"name": "json.dumps(normalised event) (baseline)", "measured": f"{baseline} µs/event"},
        {"name": "route + render Slack/email/SMS", "measured": f"{rendered} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": round(rendered / baseline, 1)},
        {"name": "HubSpot contact + note mapping", "measured": f"{mapped} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": round(mapped / baseline, 1)},
        {"name": "notify(): ledger + Slack + SMTP + Twilio, client CPU", "measured": f"{fan} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": round(fan / baseline, 1)},
        {"name": "notify() replay (all channels already sent)", "measured": f"{figures['replay_skip_us']} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": round(figures["replay_skip_us"] / baseline, 1)},
    ]
    return {"name": "fanout", "figures": figures, "baseline": baseline,
            "ratio": round(fan / baseline, 1), "rows": rows,
            "method": "time.thread_time of the calling thread (stand-ins run in other threads; waits excluded)"}
