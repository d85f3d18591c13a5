"""`make demo`: the bundle end to end on this machine, in under a minute.

Starts the embedded Postgres (or uses DATABASE_URL), migrates, serves Windmill's
endpoints in-process on a free port (or PORT), delivers a realistic signed stream of
Dodo events over HTTP exactly as Dodo would (webhook URL with raw=true and
include_header, Standard Webhooks headers; duplicates and out-of-order deliveries
included), waits for every job, then prints what happened: the path each delivery
took through the flows, the customers, subscriptions, MRR and revenue from the
revenue views, and the local outbox: CRM and notifications (unconfigured, so written
there), and what the per-event destinations sent (PostHog, Segment, Mailchimp, Google
Calendar: configured to loopback stand-ins of their APIs, local_runner/destination_standins.py,
which append each write they accept to the outbox).
"""
from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from standardwebhooks import Webhook

from .config import SCHEMA, Config
from .runner import Runner

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "f/dodo/webhook"
HEADERS = "webhook-id,webhook-timestamp,webhook-signature"
# A demo-only secret, generated per run: nothing outside this process knows it.
BUSINESS = "bus_demo"


# ---------------------------------------------------------------- configuration


def bundle_config(database_url: str, secret: str, env: dict | None = None, root: Path = ROOT) -> Config:
    """The workspace the flows expect: the shipped variables, the webhook secret, the
    Postgres resource; integrations (HubSpot, Slack, ...) only if `env` configures them."""
    cfg = Config.from_env({**(env or {}), "DATABASE_URL": database_url}, root=root)
    cfg.variables["f/dodo/webhook_secret"] = secret
    return cfg


def quiet_wmill_client() -> None:
    """The wmill client logs every 404, even for lookups that expect one."""
    logging.getLogger("windmill_client").setLevel(logging.CRITICAL)


# ---------------------------------------------------------------- the stream


@dataclass
class Delivery:
    label: str
    webhook_id: str
    body: str             # exact bytes as signed
    envelope: dict


@dataclass
class Stream:
    """Events in delivery order, with their ids; `deliveries` adds duplicates."""
    start: datetime
    events: list[Delivery] = field(default_factory=list)
    _n: int = 0

    def add(self, etype: str, minutes: int, data: dict, label: str = "") -> Delivery:
        self._n += 1
        ts = self.start + timedelta(minutes=minutes)
        env = {"business_id": BUSINESS, "type": etype,
               "timestamp": ts.isoformat(timespec="microseconds").replace("+00:00", "Z"), "data": data}
        d = Delivery(label or etype, f"msg_demo_{self._n:03d}", json.dumps(env, separators=(",", ":")), env)
        self.events.append(d)
        return d


def _customer(cid: str, name: str, email: str) -> dict:
    return {"customer_id": cid, "name": name, "email": email}


def _payment(pid, cust, amount, currency, at, *, sub=None, status="succeeded", charge="new", product="prod_pro"):
    return {"payment_id": pid, "business_id": BUSINESS, "brand_id": "brand_demo", "created_at": at,
            "status": status, "total_amount": amount, "tax": 0, "settlement_amount": amount,
            "settlement_currency": currency, "currency": currency, "customer": cust,
            "billing": {"country": "US"}, "payment_method": "card", "subscription_id": sub,
            "subscription_ids": [sub] if sub else [], "refunds": [], "disputes": [], "metadata": {},
            "product_cart": [{"product_id": product, "quantity": 1}], "charge_type": charge,
            "retry_attempt": 0, "payment_provider": "stripe", "error_code": None, "error_message": None}


def _subscription(sid, cust, amount, currency, status, at, *, product="prod_pro", interval="Month",
                  cancelled_at=None):
    return {"subscription_id": sid, "product_id": product, "customer": cust, "status": status,
            "recurring_pre_tax_amount": amount, "currency": currency, "quantity": 1,
            "payment_frequency_count": 1, "payment_frequency_interval": interval,
            "subscription_period_count": 1, "subscription_period_interval": "Year",
            "next_billing_date": at, "previous_billing_date": at, "created_at": at,
            "cancel_at_next_billing_date": False, "cancelled_at": cancelled_at, "trial_period_days": 0,
            "addons": [], "metadata": {}, "tax_inclusive": False, "on_demand": False}


def build_stream(start: datetime | None = None) -> tuple[Stream, list[Delivery]]:
    """Four customers over a quarter, in USD, JPY and KWD. Returns the stream (one entry
    per distinct event) and the delivery order (shuffled pairs, duplicates)."""
    s = Stream(start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
    at = lambda m: (s.start + timedelta(minutes=m)).isoformat().replace("+00:00", "Z")  # noqa: E731
    day = 24 * 60
    ada = _customer("cus_ada", "Ada Lovelace", "ada@example.com")
    ken = _customer("cus_ken", "Kenji Sato", "kenji@example.jp")
    layla = _customer("cus_layla", "Layla Al-Sabah", "layla@example.com.kw")
    bob = _customer("cus_bob", "Bob Stone", "bob@example.com")
    # Ada: USD monthly Pro, renews, upgrades to Business, later cancels.
    s.add("payment.succeeded", 0, _payment("pay_ada_1", ada, 2900, "USD", at(0), sub="sub_ada"))
    s.add("subscription.active", 1, _subscription("sub_ada", ada, 2900, "USD", "active", at(1)))
    s.add("payment.succeeded", 31 * day, _payment("pay_ada_2", ada, 2900, "USD", at(31 * day), sub="sub_ada", charge="renewal"))
    s.add("subscription.renewed", 31 * day + 1, _subscription("sub_ada", ada, 2900, "USD", "active", at(31 * day + 1)))
    s.add("subscription.plan_changed", 40 * day, _subscription("sub_ada", ada, 9900, "USD", "active", at(40 * day), product="prod_business"))
    s.add("payment.succeeded", 40 * day + 1, _payment("pay_ada_3", ada, 7000, "USD", at(40 * day + 1), sub="sub_ada", charge="plan_change", product="prod_business"))
    # Kenji: JPY yearly plan (zero-decimal currency), one partial refund.
    s.add("payment.succeeded", 2 * day, _payment("pay_ken_1", ken, 120000, "JPY", at(2 * day), sub="sub_ken", product="prod_pro_jp"))
    s.add("subscription.active", 2 * day + 1, _subscription("sub_ken", ken, 120000, "JPY", "active", at(2 * day + 1), product="prod_pro_jp", interval="Year"))
    s.add("refund.succeeded", 20 * day, {"refund_id": "ref_ken_1", "payment_id": "pay_ken_1", "business_id": BUSINESS,
          "created_at": at(20 * day), "status": "succeeded", "amount": 20000, "currency": "JPY", "is_partial": True,
          "reason": "Prorated downgrade", "customer": ken, "metadata": {}})
    # Layla: KWD monthly (three-decimal currency), disputes a payment and loses it, cancels.
    s.add("payment.succeeded", 3 * day, _payment("pay_layla_1", layla, 12500, "KWD", at(3 * day), sub="sub_layla"))
    s.add("subscription.active", 3 * day + 1, _subscription("sub_layla", layla, 12500, "KWD", "active", at(3 * day + 1)))
    s.add("dispute.opened", 25 * day, {"dispute_id": "dis_layla_1", "payment_id": "pay_layla_1", "business_id": BUSINESS,
          "created_at": at(25 * day), "amount": "12500", "currency": "KWD", "dispute_stage": "dispute",
          "dispute_status": "dispute_opened", "remarks": "Customer does not recognise the charge", "customer": layla})
    s.add("dispute.lost", 45 * day, {"dispute_id": "dis_layla_1", "payment_id": "pay_layla_1", "business_id": BUSINESS,
          "created_at": at(25 * day), "amount": "12500", "currency": "KWD", "dispute_stage": "dispute",
          "dispute_status": "dispute_lost", "remarks": "Evidence not accepted", "customer": layla})
    s.add("subscription.cancelled", 46 * day, _subscription("sub_layla", layla, 12500, "KWD", "cancelled", at(46 * day), cancelled_at=at(46 * day)))
    # Bob: USD monthly, a declined renewal, then a full refund of his first payment and cancellation.
    s.add("payment.succeeded", 5 * day, _payment("pay_bob_1", bob, 1500, "USD", at(5 * day), sub="sub_bob", product="prod_basic"))
    s.add("subscription.active", 5 * day + 1, _subscription("sub_bob", bob, 1500, "USD", "active", at(5 * day + 1), product="prod_basic"))
    s.add("payment.failed", 35 * day, _payment("pay_bob_2", bob, 1500, "USD", at(35 * day), sub="sub_bob", status="failed", charge="renewal", product="prod_basic"))
    s.add("refund.succeeded", 36 * day, {"refund_id": "ref_bob_1", "payment_id": "pay_bob_1", "business_id": BUSINESS,
          "created_at": at(36 * day), "status": "succeeded", "amount": 1500, "currency": "USD", "is_partial": False,
          "reason": "Service not used", "customer": bob, "metadata": {}})
    s.add("subscription.cancelled", 36 * day + 5, _subscription("sub_bob", bob, 1500, "USD", "cancelled", at(36 * day + 5), product="prod_basic", cancelled_at=at(36 * day + 5)))
    order = sorted(s.events, key=lambda d: d.envelope["timestamp"])
    # Out of order: a few events overtake the one before them (Dodo does not guarantee order).
    for i in (0, 7, 12, 16):
        order[i], order[i + 1] = order[i + 1], order[i]
    # At-least-once: Dodo retries a few deliveries (same webhook-id, new timestamp).
    order += [s.events[0], s.events[5], s.events[11]]
    return s, order


# ---------------------------------------------------------------- delivering


def post(url: str, body: bytes, headers: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def deliver(base: str, workspace: str, secret: str, d: Delivery, token: str | None = None) -> str:
    """POST one delivery the way Dodo does; returns Windmill's job id."""
    ts = datetime.now(timezone.utc)
    headers = {"webhook-id": d.webhook_id, "webhook-timestamp": str(int(ts.timestamp())),
               "webhook-signature": Webhook(secret).sign(d.webhook_id, ts, d.body)}
    url = f"{base}/api/w/{workspace}/jobs/run/f/{ENTRY}?raw=true&include_header={HEADERS}"
    if token:
        url += f"&token={token}"
    status, job_id = post(url, d.body.encode(), headers)
    if status != 201:
        raise RuntimeError(f"delivery {d.webhook_id}: HTTP {status}")
    return job_id


def wait_all(base: str, workspace: str, job_ids: list[str], timeout_s: float = 50) -> dict[str, dict]:
    deadline, done = time.monotonic() + timeout_s, {}
    while len(done) < len(job_ids):
        for jid in job_ids:
            if jid not in done:
                job = get_json(f"{base}/api/w/{workspace}/jobs_u/get/{jid}")
                if job["type"] == "CompletedJob":
                    done[jid] = job
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(job_ids) - len(done)} job(s) still running")
        time.sleep(0.02)
    return done


# ---------------------------------------------------------------- summary


STEP_NAMES = {"preprocessor": "verified", "normalize": "normalised", "record": "normalised+recorded"}


def path_of(job: dict) -> str:
    """The path a delivery took through f/dodo/webhook, from its job log."""
    log = job.get("local_jobs", [])
    by_step = {}
    for j in log:  # the last attempt of each step decides
        if j["step_id"]:
            by_step[j["step_id"]] = j
    out = [STEP_NAMES[s] + ("" if by_step[s]["success"] else " (error)") for s in STEP_NAMES if s in by_step]
    sinks = [s + ("" if by_step[s]["success"] else " (error)") for s in ("crm", "notify") if s in by_step]
    if "custom_flow" in by_step:  # f/dodo/custom, called only when it has steps
        sinks.append("custom" + ("" if by_step["custom_flow"]["success"] else " (error)"))
    if sinks:
        out.append("[" + " | ".join(sinks) + "]")
    if job.get("is_skipped") and isinstance(job.get("result"), dict) and job["result"].get("status") == "duplicate":
        out[-1] = "duplicate: stopped"
    if "failure" in by_step:
        out.append("failure module")
    return " -> ".join(out) + f"  [{len(log)} jobs]"


def _outcome(r: dict | None) -> str:
    r = r or {}
    return "outbox" if str(r.get("external_id") or "").startswith("outbox:") else str(r.get("status"))


def sink_note(ledger_rows: list[dict]) -> str:
    """What the delivery's sinks did, from its ledger rows (one per sink and channel): the
    CRM, the notifications and the per-event destinations (which ride in the CRM step)."""
    by_sink: dict[str, list[str]] = {}
    for r in ledger_rows:
        group = {"crm": "crm", "notify": "notify"}.get(r["sink"], "destinations")
        by_sink.setdefault(group, []).append(f"{r['channel']} {_outcome(r)}")
    return "; ".join(f"{g}: {', '.join(by_sink[g])}" for g in ("crm", "destinations", "notify") if g in by_sink)


# (title, SQL) of each table in the summary: tables and the revenue views, nothing recomputed here
REPORTS = {
    "customers": ("Customers (with customer_lifetime_value)",
                  "SELECT c.customer_id, c.email, c.name, v.currency, v.payments, v.gross, v.lifetime_value "
                  "FROM customers c LEFT JOIN customer_lifetime_value v USING (customer_id) "
                  "ORDER BY c.customer_id, v.currency"),
    "subscriptions": ("Subscriptions",
                      "SELECT subscription_id, customer_id, product_id, status, currency, "
                      "to_major(recurring_pre_tax_minor, currency) AS price, payment_frequency_interval AS every "
                      "FROM subscriptions ORDER BY subscription_id"),
    "mrr": ("MRR (view mrr)", "SELECT currency, active_subscriptions, mrr FROM mrr ORDER BY currency"),
    "revenue": ("Revenue, all time (view revenue_daily)",
                "SELECT currency, sum(payments) AS payments, to_major(sum(gross_minor), currency) AS gross, "
                "to_major(sum(refunds_minor), currency) AS refunds, "
                "to_major(sum(disputes_lost_minor), currency) AS disputes_lost, "
                "to_major(sum(net_minor), currency) AS net FROM revenue_daily GROUP BY currency ORDER BY currency"),
    "inbox": ("Inbox (webhook_events)",
              "SELECT status, count(*) AS deliveries FROM webhook_events GROUP BY status ORDER BY status"),
}


def report(conn) -> dict[str, tuple[list[str], list[tuple]]]:
    out = {}
    for key, (_title, sql) in REPORTS.items():
        cur = conn.execute(sql)
        out[key] = ([d.name for d in cur.description], cur.fetchall())
    return out


def print_table(title: str, cols: list[str], rows: list[tuple], out=print) -> None:
    out(f"\n{title}")
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    out("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in cells:
        out("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))


def outbox_text(rec: dict) -> str:
    if rec["kind"] == "hubspot":
        contact = rec.get("contact") or {}
        props = ", ".join(f"{k.removeprefix('dodo_')}={v}" for k, v in contact.items()
                          if k.startswith("dodo_") and k not in ("dodo_customer_id", "dodo_last_payment_date"))
        return f"{contact.get('email')}: {props}" + ("; + timeline note" if rec.get("note") else "")
    if rec["kind"] in DESTINATION_KINDS:  # what a destination's stand-in accepted
        return ", ".join(f"{k}={v}" for k, v in rec.items() if k not in ("kind", "at"))
    target = rec.get("channel") or ", ".join(rec.get("to") or []) if isinstance(rec.get("to"), list) else rec.get("to")
    return f"{target or rec.get('channel') or ''}: {rec.get('text') or rec.get('subject') or rec.get('body') or ''}"


DESTINATION_KINDS = ("posthog", "segment", "mailchimp", "gcal")


def outbox_lines(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- main


def run_demo(database_url: str, *, port: int = 0, outbox: str | None = None, out=print) -> dict:
    """Deliver the stream through a local server; returns what was printed, as data."""
    from f.dodo.lib import db as dblib  # noqa: PLC0415 - the bundle's own library
    from f.dodo.lib import ledger  # noqa: PLC0415

    from .destination_standins import DestinationStandIns  # noqa: PLC0415
    from .server import App, apply_migrations, make_server  # noqa: PLC0415

    quiet_wmill_client()
    outbox = outbox or os.path.join(tempfile.mkdtemp(prefix="dodo-demo-"), "outbox.jsonl")
    os.environ["DODO_OUTBOX"] = outbox
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    config = bundle_config(database_url, secret, env={k: v for k, v in os.environ.items()
                                                      if k not in ("DATABASE_URL", "DODO_WEBHOOK_SECRET")})
    out(apply_migrations(config))
    # The per-event destinations, to local stand-ins of their APIs (each write they accept goes to the outbox).
    dests = DestinationStandIns(record=lambda kind, rec: ledger.to_outbox(kind, rec))
    for name, resource in dests.resources().items():
        config.resources.setdefault(f"f/dodo/{name}", resource)
    app = App(Runner(ROOT, config), workers=4)
    server = make_server(app, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        stream, order = build_stream()
        out(f"serving Windmill endpoints on {base}; delivering {len(order)} deliveries "
            f"({len(stream.events)} events, {len(order) - len(stream.events)} retries, some out of order)")
        jobs = []
        for d in order:  # one at a time: the order the flows see is the order sent
            jid = deliver(base, app.workspace, secret, d)
            wait_all(base, app.workspace, [jid])
            jobs.append((d, jid))
        done = wait_all(base, app.workspace, [j for _, j in jobs])
    finally:
        server.shutdown()
        server.server_close()
        dests.close()
    out("\nPer delivery: the path it took (from the job log) and what its sinks did (its ledger rows)")
    paths, seen, latest = [], set(), ""
    with dblib.connect(config.get_resource("f/dodo/postgres"), SCHEMA) as conn:
        ledger_rows = {d.webhook_id: ledger.rows(conn, d.webhook_id) for d, _ in jobs}
    for d, jid in jobs:
        job = done[jid]
        note = "redelivery" if d.webhook_id in seen else ("late" if d.envelope["timestamp"] < latest else "")
        sinks = "" if d.webhook_id in seen else sink_note(ledger_rows[d.webhook_id])
        seen.add(d.webhook_id)
        latest = max(latest, d.envelope["timestamp"])
        line = f"  {d.webhook_id}  {d.label:<26} {note:<10} {path_of(job)}  {sinks}"
        paths.append({"webhook_id": d.webhook_id, "event_type": d.envelope["type"], "path": path_of(job),
                      "success": job["success"], "skipped": job["is_skipped"], "jobs": len(job["local_jobs"])})
        out(line)
    with dblib.connect(config.get_resource("f/dodo/postgres"), SCHEMA) as conn:
        tables = report(conn)
    for key, (cols, rows) in tables.items():
        print_table(REPORTS[key][0], cols, rows, out)
    box = outbox_lines(outbox)
    out(f"\nLocal outbox ({outbox}): {len(box)} message(s)")
    for rec in box:
        out(f"  {rec['kind']:<9} {rec.get('delivery', ''):<14} {outbox_text(rec)[:110]}")
    if dests.bad_requests:  # a request the provider would refuse: the demo fails on it
        out(f"\nRefused by the destination stand-ins: {dests.bad_requests[:5]}")
    return {"paths": paths, "tables": tables, "outbox": box, "stream": stream, "order": order,
            "refused": dests.bad_requests}


def main() -> int:
    from .pg_server import start_server  # noqa: PLC0415

    t0 = time.perf_counter()
    pg = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        pg = start_server()
        url = pg.url
    try:
        result = run_demo(url, port=int(os.environ.get("PORT", "0")))
    finally:
        if pg:
            pg.stop()
    ok = all(p["success"] for p in result["paths"]) and not result["refused"]
    print(f"\ndone in {time.perf_counter() - t0:.1f}s: {len(result['paths'])} deliveries, "
          f"{'all succeeded' if ok else 'SOME FAILED'}")
    return 0 if ok else 1
