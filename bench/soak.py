"""`make soak`: the bundle under load and faults, checked against an independent ground truth.

A seeded generator (local_runner/simulate.py) plays thousands of customer lifecycles over
every Dodo event family in USD, EUR, INR, JPY and KWD. Concurrent clients deliver them,
signed, to the local Windmill server (the webhook URL, exactly as Dodo does), with 30 %
redeliveries and reordering within a window, while faults are injected:

- Postgres restarted mid-run (twice, `PgServer.restart()`: every connection dropped);
- HubSpot answering 429 and 5xx in bursts (some 5xx after the write was applied);
- PostHog, Segment, Mailchimp and Google Calendar (local_runner/destination_standins.py,
  each checking requests as the provider documents them) answering 429 with Retry-After,
  5xx, or dropping the connection, in bursts (some after the write was applied);
- the SMTP server refusing every message for a minute (a few seconds in the test);
- workers killed mid-event (see `KillSwitch`).

Meanwhile the scheduled sinks run on their own clock, as their schedules would: the
warehouse export (Parquet files, here into a directory) and the MySQL mirror (into a real
MariaDB), through the Postgres restarts.

Then one replay of the failed inbox rows, a last run of the scheduled sinks, and the
checks: every delivery in the inbox, Postgres equal to the ground truth, each notification
received exactly once per channel (counted at the stand-ins), the CRM stand-in holding
exactly the expected contacts and timeline notes, and per destination (`destination_effects`):
PostHog and Segment each event once after their own dedupe (by uuid / messageId: a double
is one delivery landing under two ids), the Mailchimp audience exactly the expected
members (one per email) with tags equal to the final state, the calendar's live
events exactly the expected ones (one per subscription or dispute, on the right date); the
Parquet files holding every inbox row exactly once; MySQL holding exactly Postgres's
mirrored deliveries and rows. Figures go to stdout and bench/soak-report.json. Loopback only, bounded
(a deadline), stops by itself. The flows' retry waits are scaled by `retry_scale` through
the runner's sleep function; the flow files are not changed.

Two server processes (forked) serve the deliveries, like two Windmill workers on one
Postgres, so the bundle gets both cores and the harness (senders, stand-ins) does not
share their interpreter lock.

What the soak found, and what fixed it:
- a worker killed after the record step committed: the restarted step answered
  "duplicate" and the flow stopped before its sinks. Fixed by the per-run
  `delivery_attempt` key: a re-run of the same flow run answers "recorded".
- Postgres restarted between a provider accepting a message and the ledger's commit: the
  ledger row rolled back and the retry sent again. Fixed by the ledger's lease: the
  provider is called with no transaction open and "sent" is written in its own.
"""
from __future__ import annotations

import base64
import functools
import http.client
import importlib
import json
import multiprocessing
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "bench" / "soak-report.json"
ENTRY = "f/dodo/webhook"
URL = f"/api/w/{{ws}}/jobs/run/f/{ENTRY}?raw=true&include_header=webhook-id,webhook-timestamp,webhook-signature"


@dataclass
class Settings:
    customers: int = 2000          # ~14,000 events, ~20,000 deliveries with 30 % duplicates
    seed: int = 7
    duplicates: float = 0.3
    window: int = 40               # reordering window (deliveries)
    clients: int = 8               # concurrent senders
    processes: int = 2             # server processes (Windmill workers share one Postgres)
    workers: int = 8               # worker threads per server process
    retry_scale: float = 0.1       # flow retry waits x this (a 3 s wait becomes 0.3 s)
    smtp_outage_s: float = 60.0
    pg_restarts: int = 2
    kills: int = 12
    kill_steps: tuple = ("record", "crm", "notify")
    hubspot_period_s: float = 20.0
    hubspot_burst_s: float = 3.0
    dest_period_s: float = 17.0    # destinations' fault bursts (their own phase and seed)
    dest_burst_s: float = 3.0
    batch_period_s: float = 15.0   # the scheduled sinks (warehouse export, MySQL mirror) run this often
    export_lag_s: float = 60.0     # the export's wait for in-flight transactions: production's LAG_S
    deadline_s: float = 900.0      # everything (send, drain, replay) stops by then
    drain_s: float = 90.0          # sending stops this long before the deadline
    report: str | None = str(REPORT)


# ---------------------------------------------------------------- worker kills

class WorkerKilled(BaseException):
    """A worker's death: not an Exception, so no handler in the step or the runner sees it."""


class KillSwitch:
    """Kill the worker running a step, after the step's effects and before its completion
    is saved (the window where a lost result hurts most), then restart the step from the
    beginning with the same arguments: what Windmill does with a zombie job (a worker that
    stopped pinging): it re-queues it under the same id (RESTART_ZOMBIE_JOBS, default on),
    and the flow resumes at that step with the results it had saved before.

    The local server keeps its queue in memory, so `kill -9` of it would lose jobs a real
    Windmill keeps in Postgres: that is not the failure being modelled, this is."""

    # step -> (module, function): the record step is the PostgreSQL script the worker runs
    # (the runner's pg_script.run); the others are Python entry scripts (their `main`)
    SCRIPTS = {"record": ("local_runner.pg_script", "run"), "crm": ("f.dodo.crm.sync_contact", "main"),
               "notify": ("f.dodo.notify.send", "main")}
    STEPS = tuple(SCRIPTS)

    def __init__(self, ctx):
        self.armed = ctx.Array("i", len(self.STEPS))     # kills waiting for their step, per step
        self.killed = ctx.Array("i", len(self.STEPS))    # kills done, per step
        self.ids = ctx.Queue()                           # (step, webhook_id) of each kill
        self._saved: dict = {}

    def arm(self, step: str) -> None:
        with self.armed.get_lock():
            self.armed[self.STEPS.index(step)] += 1

    def _take(self, step: str) -> bool:
        i = self.STEPS.index(step)
        with self.armed.get_lock():
            if self.armed[i]:
                self.armed[i] -= 1
                return True
        return False

    def counts(self) -> dict:
        return {step: self.killed[i] for i, step in enumerate(self.STEPS) if self.killed[i]}

    def examples(self, limit: int = 20) -> list:
        out = []
        while len(out) < limit:
            try:
                out.append(self.ids.get(timeout=0.2))
            except Exception:  # noqa: BLE001 - queue.Empty
                break
        return out

    def install(self) -> None:
        for step, (module, name) in self.SCRIPTS.items():
            mod = importlib.import_module(module)
            real = getattr(mod, name)
            self._saved[mod] = (name, real)
            setattr(mod, name, self._wrap_sql(real) if step == "record" else self._wrap(step, real))

    def uninstall(self) -> None:
        for mod, (name, real) in self._saved.items():
            setattr(mod, name, real)
        self._saved.clear()

    def _wrap_sql(self, real):
        """The record step: only the script that calls record_delivery is killed."""
        def run(code, args, resources):
            if "record_delivery" not in code:
                return real(code, args, resources)
            return self._run("record", lambda: real(code, args, resources), args["call"]["webhook_id"])
        return run

    def _wrap(self, step, real):
        @functools.wraps(real)  # the runner passes arguments by main's signature
        def main(**kwargs):
            return self._run(step, lambda: real(**kwargs), (kwargs.get("event") or {}).get("webhook_id"))
        return main

    def _run(self, step, job, webhook_id):
        """Run the step's job; when a kill is armed for the step, run it once to its effects,
        kill it, then run it again from the start with the same arguments."""
        if self._take(step):
            try:
                job()
                raise WorkerKilled(step)
            except WorkerKilled:
                pass  # the worker is gone; its connections were closed (rolled back if open)
            except Exception:  # noqa: BLE001 - the step failed before the kill: same restart
                pass
            with self.killed.get_lock():
                self.killed[self.STEPS.index(step)] += 1
            self.ids.put((step, webhook_id))
        return job()  # the zombie job, restarted


# ---------------------------------------------------------------- senders

class Senders:
    """`clients` threads delivering in order from a shared cursor, each on its own
    keep-alive connection, signing each attempt at send time as Dodo does. A 503 (queue
    full) or a dropped connection is retried with the same webhook-id, like Dodo."""

    def __init__(self, ports: list[int], workspace: str, secret: str, deliveries: list, clients: int):
        self.ports, self.url = ports, URL.format(ws=workspace)
        self.webhook = Webhook(secret)
        self.deliveries, self.clients = deliveries, clients
        self.cursor = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.accepted: Counter = Counter()  # port -> deliveries accepted (201)
        self.accepted_ids: set[str] = set()
        self.status: Counter = Counter()
        self.retries = 0
        self.stop = threading.Event()

    def _next(self):
        with self.lock:
            if self.cursor >= len(self.deliveries) or self.stop.is_set():
                return None
            self.cursor += 1
            return self.deliveries[self.cursor - 1]

    def _post(self, conn, e) -> tuple[int, str]:
        now = datetime.now(timezone.utc)
        body = e.body
        conn.request("POST", self.url, body=body.encode(), headers={
            "content-type": "application/json", "webhook-id": e.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.webhook.sign(e.webhook_id, now, body)})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()

    def client(self, port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (e := self._next()) is not None:
            while not self.stop.is_set():
                try:
                    status, _ = self._post(conn, e)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    status = 0
                with self.lock:
                    self.status[status] += 1
                    if status == 201:
                        self.accepted[port] += 1
                        self.accepted_ids.add(e.webhook_id)
                        self.sent += 1
                        break
                    self.retries += 1
                time.sleep(0.2)
        conn.close()

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, args=(self.ports[i % len(self.ports)],), daemon=True,
                                    name=f"soak-client-{i}")
                   for i in range(self.clients)]
        for t in threads:
            t.start()
        return threads


# ---------------------------------------------------------------- faults

@dataclass
class Faults:
    pg_restarts: list[dict] = field(default_factory=list)
    smtp_outage: dict = field(default_factory=dict)
    kills_armed: int = 0


def fault_plan(s: Settings, total: int) -> list[tuple[int, str]]:
    """(after this many deliveries sent, fault) in order."""
    plan = [(int(total * 0.15), "smtp_down")]
    plan += [(int(total * (0.35 + 0.35 * i / max(1, s.pg_restarts - 1 or 1))), "pg_restart")
             for i in range(s.pg_restarts)]
    plan += [(int(total * (0.05 + 0.85 * i / max(1, s.kills))), "kill:" + s.kill_steps[i % len(s.kill_steps)])
             for i in range(s.kills)]
    return sorted(plan)


def inject(s: Settings, senders: Senders, pg, smtp, kills: KillSwitch, faults: Faults, done: threading.Event):
    plan = fault_plan(s, len(senders.deliveries))
    smtp_until = None
    while not done.is_set():
        sent = senders.sent
        while plan and plan[0][0] <= sent:
            _, what = plan.pop(0)
            if what == "smtp_down":
                smtp.refusing, smtp_until = True, time.monotonic() + s.smtp_outage_s
                faults.smtp_outage = {"at_delivery": sent, "seconds": s.smtp_outage_s}
            elif what == "pg_restart":
                t0 = time.monotonic()
                pg.restart()
                faults.pg_restarts.append({"at_delivery": sent, "down_s": round(time.monotonic() - t0, 2)})
            else:
                kills.arm(what.split(":", 1)[1])
                faults.kills_armed += 1
        if smtp_until and time.monotonic() >= smtp_until:
            smtp.refusing, smtp_until = False, None
        time.sleep(0.05)
    smtp.refusing = False


# ---------------------------------------------------------------- replay

def replay(runner) -> dict:
    """One replay of the failed inbox rows through the f/dodo/replay script, as
    `python -m local_runner replay` runs it."""
    out = runner.run_script("f/dodo/replay", {"db": "$res:f/dodo/postgres", "limit": 10000})
    if not out.success:
        return {"via": "f/dodo/replay", "error": str(out.result)[:500]}
    rows = out.result["render_all"][1].get("table-row-object", [])
    return {"via": "f/dodo/replay", "failed_rows": len(rows), "succeeded": sum(bool(r["success"]) for r in rows)}


def _jsonable(x):
    return json.loads(json.dumps(x, default=str)) if isinstance(x, dict) else {"result": str(x)}


# ---------------------------------------------------------------- checks

TABLE_KEYS = {"payments": "payment_id", "refunds": "refund_id", "disputes": "dispute_id",
              "subscriptions": "subscription_id", "license_keys": "license_key_id", "payouts": "payout_id",
              "credit_ledger_entries": "entry_id", "abandoned_checkouts": "payment_id",
              "entitlement_grants": "grant_id", "customers": "customer_id"}


def _norm(v):
    if isinstance(v, Decimal):
        return v.normalize()
    if isinstance(v, str):
        try:
            return Decimal(v).normalize() if v and v[0].isdigit() and "_" not in v else v
        except ArithmeticError:
            return v
    return v


def state_diffs(conn, truth) -> list[str]:
    """Every difference between Postgres and the ground truth, as readable lines."""
    from local_runner.simulate import iso  # noqa: PLC0415
    diffs = []
    for table, expected in truth.tables.items():
        cols = sorted(next(iter(expected.values())).keys()) if expected else []
        if table == "dunning":
            rows = conn.execute(f"SELECT subscription_id, started_at, {', '.join(cols)} FROM dunning").fetchall()
            got = {(r[0], iso(r[1].astimezone(timezone.utc))): dict(zip(cols, r[2:])) for r in rows}
        else:
            key = TABLE_KEYS[table]
            rows = conn.execute(f"SELECT {key}, {', '.join(cols)} FROM {table}").fetchall()
            got = {r[0]: dict(zip(cols, r[1:])) for r in rows}
        for k in expected.keys() - got.keys():
            diffs.append(f"{table} {k}: missing")
        for k in got.keys() - expected.keys():
            diffs.append(f"{table} {k}: not expected")
        for k in expected.keys() & got.keys():
            for c in cols:
                if _norm(expected[k][c]) != _norm(got[k][c]):
                    diffs.append(f"{table} {k}.{c}: expected {expected[k][c]!r}, got {got[k][c]!r}")
    mrr = {c: (n, _norm(m)) for c, n, m in conn.execute("SELECT currency, active_subscriptions, mrr FROM mrr")}
    want = {c: (n, _norm(m)) for c, (n, m) in truth.mrr.items()}
    if mrr != want:
        diffs.append(f"mrr: expected {truth.mrr}, got {mrr}")
    net = {c: _norm(v) for c, v in conn.execute(
        "SELECT currency, to_major(sum(net_minor), currency) FROM revenue_daily GROUP BY currency")}
    if net != {c: _norm(v) for c, v in truth.net.items()}:
        diffs.append(f"net revenue: expected {truth.net}, got {net}")
    return diffs


def inbox_check(conn, truth) -> dict:
    got = dict(conn.execute("SELECT webhook_id, status FROM webhook_events").fetchall())
    missing = sorted(truth.inbox.keys() - got.keys())
    wrong = sorted(w for w in truth.inbox.keys() & got.keys() if got[w] != truth.inbox[w])
    return {"rows": len(got), "expected": len(truth.inbox), "missing": missing, "wrong_status": wrong,
            "statuses": dict(Counter(got.values())), "unexpected": sorted(got.keys() - truth.inbox.keys())}


def side_effects(truth, http, smtp) -> dict:
    got = Counter()
    for ch, counter in (("slack", http.slack), ("email", smtp.received), ("sms", http.sms)):
        for wid, n in counter.items():
            got[(wid, ch)] += n
    lost = sorted(truth.notifications - got.keys())
    # failure alerts (a delivery that failed after its retries): at most one per delivery and channel
    alerts = Counter({(w, ch): n for ch, counter in (("slack", http.alerts), ("email", smtp.alerts))
                      for w, n in counter.items()})
    dup = {f"{w} {c}": n for (w, c), n in got.items() if n > 1} | {
        f"{w} {c} alert": n for (w, c), n in alerts.items() if n > 1}
    extra = sorted(got.keys() - truth.notifications)
    contacts = {e: r["properties"].get("dodo_customer_id") for e, r in http.contacts.items()}
    notes_ok = [w for w, email in truth.notes.items() if w in http.notes and email in http.contacts
                and (http.notes[w]["id"], http.contacts[email]["id"]) in http.associations]
    return {
        "expected": len(truth.notifications), "received": sum(got.values()), "failure_alerts": sum(alerts.values()),
        "per_channel": dict(Counter(c for (_, c) in got.elements())),
        "lost": lost, "duplicates": dup, "unexpected": extra,
        "unattributed": len(http.unattributed) + len(smtp.unattributed),
        "crm": {"contacts_expected": len(truth.contacts), "contacts": len(http.contacts),
                "contacts_missing": sorted(truth.contacts.keys() - contacts.keys()),
                "contacts_unexpected": sorted(contacts.keys() - truth.contacts.keys()),
                "contacts_wrong_id": sorted(e for e in truth.contacts.keys() & contacts.keys()
                                            if contacts[e] != truth.contacts[e]),
                "notes_expected": len(truth.notes), "notes": len(http.notes),
                "notes_missing_or_unlinked": sorted(truth.notes.keys() - set(notes_ok)),
                "notes_unexpected": sorted(http.notes.keys() - truth.notes.keys()),
                "notes_duplicated": sorted(k for k, n in http.note_creates.items() if n > 1),
                "bad_requests": http.bad_requests[:5]},
    }


def _tally(expected, got: Counter) -> dict:
    """Lost (expected, never there), doubles (there more than once), unexpected."""
    return {"expected": len(expected), "got": len(got), "lost": sorted(set(expected) - got.keys()),
            "doubles": sorted(k for k, n in got.items() if n > 1), "unexpected": sorted(got.keys() - set(expected))}


CALENDAR_KEY = [(re.compile(r"^Subscription (\S+) renews\."), "renewal"),
                (re.compile(r"^Subscription (\S+) trial ends\."), "trial"),
                (re.compile(r"^Dispute (\S+) on payment"), "dispute")]


def _calendar_key(event: dict) -> tuple[str, str] | None:
    for pattern, kind in CALENDAR_KEY:
        if m := pattern.match(event.get("description") or ""):
            return kind, m.group(1)
    return None


def destination_effects(truth, dests) -> dict:
    """Per destination, what its stand-in holds against the ground truth, the way its
    provider counts: PostHog keeps one event per uuid, Segment one call per messageId, so
    a double is one delivery (type, who, when) under two ids; Mailchimp one member per
    email; the calendar one live event per object."""
    with dests.lock:
        posthog = Counter((b["event"], b["distinct_id"], b["timestamp"]) for b in dests.posthog.values())
        calls = list(dests.segment.values())
        members = [dict(m, tags=set(m["tags"])) for m in dests.members.values()]
        inserts = {k: n for k, n in dests.inserts.items() if n > 1}
    track = Counter((b["event"], b["userId"], b["timestamp"]) for c, b in calls if c == "track")
    identify = Counter((b["userId"], b["timestamp"]) for c, b in calls if c == "identify")
    audience = _tally(truth.audience, Counter(m["email_address"].lower() for m in members))
    audience["wrong_tags"] = sorted(m["email_address"] for m in members if m["email_address"] in truth.audience
                                    and m["tags"] != truth.audience[m["email_address"]])
    live = dests.live_events()
    keys = {eid: _calendar_key(ev) for eid, ev in live.items()}
    calendar = _tally(truth.calendar, Counter(k for k in keys.values() if k))
    calendar["doubles"] += sorted(inserts)  # an event id inserted twice
    calendar["wrong_date"] = sorted(k for eid, k in keys.items() if k in truth.calendar
                                    and live[eid]["start"].get("date") != truth.calendar[k])
    calendar["unattributed"] = sorted(eid for eid, k in keys.items() if k is None)
    return {"posthog": _tally(truth.analytics, posthog), "segment_track": _tally(truth.analytics, track),
            "segment_identify": _tally(truth.identifies, identify), "mailchimp": audience, "gcal": calendar,
            "bad_requests": list(dests.bad_requests)}


class Batches:
    """The scheduled sinks on their own clock during the run, as their schedules run them:
    the warehouse export (f/dodo/lib/warehouse.py; files into `out_dir` under the keys the
    export script gives object storage) and the MySQL mirror (f/dodo/lib/mysql_mirror.py).
    A tick that fails (Postgres restarting) is counted and the next one carries on."""

    def __init__(self, pg_resource: dict, my_resource: dict, out_dir: str, s: Settings):
        self.pg_resource, self.my_resource, self.out_dir, self.s = pg_resource, my_resource, out_dir, s
        self.ticks, self.exported, self.mirrored = 0, 0, 0
        self.errors: list[str] = []

    def write(self, key: str, data: bytes) -> None:
        path = Path(self.out_dir, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # an object store's put: the whole object or nothing

    def tick(self, lag: float) -> None:
        from f.dodo.lib import db as dblib  # noqa: PLC0415
        from f.dodo.lib import mysql_mirror, warehouse  # noqa: PLC0415

        with dblib.connect(self.pg_resource, "dodo") as conn:
            self.exported += warehouse.export(conn, self.write, lag=lag)["rows"]
            my = mysql_mirror.connect(self.my_resource)
            try:
                self.mirrored += mysql_mirror.mirror_batch(conn, my)["applied"]
            finally:
                my.close()
        self.ticks += 1

    def run(self, done: threading.Event) -> None:
        while not done.wait(self.s.batch_period_s):
            try:
                self.tick(self.s.export_lag_s)
            except Exception as exc:  # noqa: BLE001 - counted; the next tick resumes from the cursors
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")


def warehouse_check(conn, out_dir: str) -> dict:
    """Every inbox row in the Parquet files exactly once (read back with DuckDB)."""
    import duckdb  # noqa: PLC0415

    files = sorted(Path(out_dir).glob("**/*.parquet"))
    got = Counter()
    if files:
        rows = duckdb.connect().execute("SELECT webhook_id FROM read_parquet(?, hive_partitioning = true)",
                                        [[str(f) for f in files]]).fetchall()
        got = Counter(r[0] for r in rows)
    inbox = [r[0] for r in conn.execute("SELECT webhook_id FROM webhook_events")]
    out = _tally(inbox, got)
    return {"files": len(files), "rows": sum(got.values()), "inbox_rows": len(inbox), "missing": out["lost"],
            "doubled": out["doubles"], "unexpected": out["unexpected"]}


_MIRRORED = {"payments": ("payment_id", "status, currency, total_minor, refunded_minor, customer_id"),
             "refunds": ("refund_id", "status, currency, amount_minor, payment_id"),
             "subscriptions": ("subscription_id", "status, currency, recurring_pre_tax_minor, product_id, customer_id")}


def mirror_check(conn, my_resource: dict) -> dict:
    """MySQL holds each mirrored delivery once and the same rows as Postgres."""
    from f.dodo.lib import mysql_mirror  # noqa: PLC0415

    want = [r[0] for r in conn.execute("SELECT webhook_id FROM webhook_events WHERE status = 'processed' "
                                       "AND category IN ('payment', 'refund', 'subscription')")]
    diffs = []
    my = mysql_mirror.connect(my_resource)
    try:
        with my.cursor() as cur:
            cur.execute("SELECT webhook_id FROM dodo_mirror_deliveries")
            got = Counter(r[0] for r in cur.fetchall())
            for table, (key, cols) in _MIRRORED.items():
                pg_rows = {r[0]: tuple(map(str, r[1:])) for r in conn.execute(f"SELECT {key}, {cols} FROM {table}")}
                cur.execute(f"SELECT {key}, {cols} FROM dodo_{table}")
                my_rows = {r[0]: tuple(map(str, r[1:])) for r in cur.fetchall()}
                diffs += [f"{table} {k}: postgres {pg_rows.get(k)}, mysql {my_rows.get(k)}"
                          for k in sorted(pg_rows.keys() | my_rows.keys()) if pg_rows.get(k) != my_rows.get(k)]
            cur.execute("SELECT customer_id, email FROM dodo_customers")
            emails = dict(conn.execute("SELECT customer_id, email FROM customers").fetchall())
            diffs += [f"customers {c}: postgres {emails.get(c)!r}, mysql {e!r}" for c, e in cur.fetchall()
                      if emails.get(c) != e]
    finally:
        my.close()
    out = _tally(want, got)
    return {"deliveries": sum(got.values()), "expected": len(want), "missing": out["lost"],
            "doubled": out["doubles"], "unexpected": out["unexpected"], "row_diffs": diffs}


# ---------------------------------------------------------------- the run

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_process(config, s: Settings, kills: KillSwitch, stats, ports) -> None:
    """A server process (forked): the local Windmill server with its workers, the kill
    switch and the scaled retry waits. Reports its port, counts its finished flows."""
    from local_runner.runner import Runner  # noqa: PLC0415
    from local_runner.server import App, make_server  # noqa: PLC0415

    class CountingApp(App):
        def run(self, path, args, event, job_id=None):
            rec = super().run(path, args, event, job_id)
            with stats.get_lock():
                stats[0 if rec.get("success") else 1] += 1
            return rec

    kills.install()
    runner = Runner(ROOT, config, sleep=lambda sec: time.sleep(sec * s.retry_scale))
    app = CountingApp(runner, workers=s.workers, queue_size=400)
    server = make_server(app, "127.0.0.1", 0)
    # One write per response: without it each response waits ~40 ms on delayed ACKs.
    server.RequestHandlerClass.disable_nagle_algorithm = True
    ports.put(server.server_address[1])
    server.serve_forever()


def run(s: Settings, out=print) -> dict:
    from f.dodo.lib import db as dblib  # noqa: PLC0415
    from local_runner.demo import bundle_config, quiet_wmill_client  # noqa: PLC0415
    from local_runner.destination_standins import DestinationStandIns  # noqa: PLC0415
    from local_runner.mysql_server import start_mariadb  # noqa: PLC0415
    from local_runner.pg_server import find_binaries, start_server  # noqa: PLC0415
    from local_runner.runner import Runner  # noqa: PLC0415
    from local_runner.server import apply_migrations  # noqa: PLC0415
    from local_runner.simulate import ROUTING, simulate  # noqa: PLC0415

    from bench.soak_standins import (HUBSPOT_TOKEN, SLACK_TOKEN, TWILIO_SID, TWILIO_TOKEN,  # noqa: PLC0415
                                     Bursts, HttpStandIns, SmtpStandIn)
    from local_runner.destination_standins import (GCAL_TOKEN, MAILCHIMP_KEY, MAILCHIMP_LIST,  # noqa: PLC0415
                                                   POSTHOG_KEY, SEGMENT_KEY)

    t_start = time.monotonic()
    quiet_wmill_client()
    sim = simulate(s.seed, s.customers)
    deliveries = sim.deliveries(s.duplicates, s.window)
    out(f"soak: {len(sim.events)} events from {s.customers} lifecycles -> {len(deliveries)} deliveries "
        f"({len(deliveries) - len(sim.events)} redeliveries), seed {s.seed}")

    saved_env = {k: os.environ.get(k) for k in ("DODO_HUBSPOT_API_URL", "DODO_SLACK_API_URL",
                                                "DODO_TWILIO_API_URL", "DODO_OUTBOX")}
    ctx = multiprocessing.get_context("fork")
    pg = start_server(provider=find_binaries()[0])  # our own server: we restart it
    # Ports first, servers after the fork: a process forked with threads running may inherit held locks.
    http_port, smtp_port, procs, http, smtp = _free_port(), _free_port(), [], None, None
    dest_port, dests, mariadb = _free_port(), None, None
    kills = KillSwitch(ctx)
    try:
        http_url = f"http://127.0.0.1:{http_port}"
        os.environ.update(DODO_HUBSPOT_API_URL=http_url, DODO_SLACK_API_URL=http_url + "/api",
                          DODO_TWILIO_API_URL=http_url,
                          DODO_OUTBOX=os.path.join(tempfile.mkdtemp(prefix="dodo-soak-"), "outbox.jsonl"))
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        config = bundle_config(pg.url, secret)
        config.variables["f/dodo/notify_routing"] = json.dumps(ROUTING)
        config.resources.update({
            "f/dodo/hubspot": {"token": HUBSPOT_TOKEN}, "f/dodo/slack": {"token": SLACK_TOKEN},
            "f/dodo/smtp": {"host": "127.0.0.1", "port": smtp_port, "user": "", "password": ""},
            "f/dodo/twilio": {"accountSid": TWILIO_SID, "token": TWILIO_TOKEN, "from_number": "+15550009999"}})
        dest_url = f"http://127.0.0.1:{dest_port}"  # local_runner/destination_standins.py's resources, on this port
        config.resources.update({
            "f/dodo/posthog": {"api_key": POSTHOG_KEY, "host": dest_url},
            "f/dodo/segment": {"write_key": SEGMENT_KEY, "base_url": dest_url},
            "f/dodo/mailchimp": {"api_key": MAILCHIMP_KEY, "list_id": MAILCHIMP_LIST, "base_url": dest_url},
            "f/dodo/gcal": {"token": GCAL_TOKEN, "calendar_id": "primary", "base_url": dest_url}})
        apply_migrations(config)
        stats = [ctx.Array("i", 2) for _ in range(s.processes)]  # [flows ok, flows failed] per process
        ports_q = ctx.Queue()
        for i in range(s.processes):
            proc = ctx.Process(target=serve_process, args=(config, s, kills, stats[i], ports_q),
                               daemon=True, name=f"soak-server-{i}")
            proc.start()
            procs.append(proc)
        ports = [ports_q.get(timeout=60) for _ in procs]
        http = HttpStandIns(Bursts(s.hubspot_period_s, s.hubspot_burst_s, seed=s.seed), port=http_port)
        smtp = SmtpStandIn(smtp_port)
        dest_bursts = Bursts(s.dest_period_s, s.dest_burst_s, seed=s.seed + 1, drops=True)
        dests = DestinationStandIns(dest_bursts.draw, port=dest_port)
        assert {f"f/dodo/{k}": v for k, v in dests.resources().items()} == {
            k: config.resources[k] for k in ("f/dodo/posthog", "f/dodo/segment", "f/dodo/mailchimp", "f/dodo/gcal")}
        mariadb = start_mariadb()
        batches = Batches(config.get_resource("f/dodo/postgres"), mariadb.resource,
                          tempfile.mkdtemp(prefix="dodo-soak-warehouse-"), s)

        senders = Senders(ports, config.workspace, secret, deliveries, s.clients)
        faults, done = Faults(), threading.Event()
        injector = threading.Thread(target=inject, args=(s, senders, pg, smtp, kills, faults, done), daemon=True)
        batcher = threading.Thread(target=batches.run, args=(done,), daemon=True, name="soak-batches")
        http.bursts.start()
        dest_bursts.start()
        t_send = time.monotonic()
        clients = senders.run()
        injector.start()
        batcher.start()
        deadline = t_start + s.deadline_s
        for c in clients:
            c.join(max(0.0, deadline - s.drain_s - time.monotonic()))
        senders.stop.set()  # past the send deadline: what was not sent is reported as not sent
        sent_s = time.monotonic() - t_send

        def finished() -> int:
            return sum(st[0] + st[1] for st in stats)
        while finished() < senders.sent and time.monotonic() < deadline - 20:
            time.sleep(0.1)
        drained = finished() >= senders.sent
        senders.stop.set()
        done.set()
        injector.join()
        batcher.join()
        http.bursts.stop()
        dest_bursts.stop()
        processed_s = time.monotonic() - t_send
        flows = {"ok": sum(st[0] for st in stats), "failed": sum(st[1] for st in stats),
                 "unfinished": senders.sent - finished()}
        killed = kills.counts()
        kill_examples = kills.examples()
        for proc in procs:  # the servers are done: stop them before the replay
            proc.terminate()
            proc.join(10)
        out(f"sent {senders.sent} deliveries in {sent_s:.1f}s, all processed after {processed_s:.1f}s; "
            f"flows: {flows}; faults: {len(faults.pg_restarts)} Postgres restarts, "
            f"{sum(http.faults.values())} HubSpot errors, {sum(dests.faults.values())} destination faults, "
            f"{smtp.refused} SMTP refusals, kills {killed}")

        t_replay = time.monotonic()
        runner = Runner(ROOT, config, sleep=lambda sec: time.sleep(sec * s.retry_scale))
        replayed = replay(runner)
        replay_s = time.monotonic() - t_replay
        out(f"replay: {replayed} in {replay_s:.1f}s")
        batches.tick(lag=0)  # the schedules' next run, once nothing is in flight
        out(f"scheduled sinks: {batches.ticks} runs, {batches.exported} rows exported, "
            f"{batches.mirrored} deliveries mirrored, {len(batches.errors)} runs failed (retried by the next)")

        with dblib.connect(config.get_resource("f/dodo/postgres"), "dodo", migrate=True) as conn:
            inbox = inbox_check(conn, sim.truth)
            diffs = state_diffs(conn, sim.truth)
            warehouse = warehouse_check(conn, batches.out_dir)
            mirrored = mirror_check(conn, mariadb.resource)
        effects = side_effects(sim.truth, http, smtp)
        dest = destination_effects(sim.truth, dests)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
        if http:
            http.close()
        if smtp:
            smtp.close()
        if dests:
            dests.close()
        if mariadb:
            mariadb.stop()
        pg.stop()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    crm = effects["crm"]
    per_dest = {k: v for k, v in dest.items() if k != "bad_requests"}
    dest_doubles = sum(len(v["doubles"]) for v in per_dest.values())
    dest_lost = sum(len(v["lost"]) for v in per_dest.values())
    dest_diffs = (sum(len(v["unexpected"]) for v in per_dest.values()) + len(dest["mailchimp"]["wrong_tags"])
                  + len(dest["gcal"]["wrong_date"]) + len(dest["gcal"]["unattributed"]) + len(dest["bad_requests"]))
    batch_diffs = sum(len(x[k]) for x in (warehouse, mirrored) for k in ("missing", "doubled", "unexpected")) \
        + len(mirrored["row_diffs"])
    crm_diffs = sum(len(crm[k]) for k in ("contacts_missing", "contacts_unexpected", "contacts_wrong_id",
                                          "notes_missing_or_unlinked", "notes_unexpected", "notes_duplicated"))
    report = {
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
        "events": len(sim.events), "deliveries_sent": senders.sent,
        "duplicates_sent": senders.sent - len({e.webhook_id for e in deliveries[:senders.cursor]}),
        "sender_retries": senders.retries, "http_statuses": {str(k): v for k, v in senders.status.items()},
        "not_sent": len({e.webhook_id for e in deliveries}) - len(senders.accepted_ids),
        "drained": drained, "flows": dict(flows),
        "faults": {"postgres_restarts": faults.pg_restarts, "smtp_outage": faults.smtp_outage,
                   "smtp_refusals": smtp.refused, "hubspot_errors": dict(http.faults),
                   "destination_faults": dict(sorted(dests.faults.items())),
                   "workers_killed": killed,
                   "faults_injected": len(faults.pg_restarts) + bool(faults.smtp_outage)
                   + sum(http.faults.values()) + sum(dests.faults.values()) + sum(killed.values())},
        "replay": replayed,
        "inbox": {k: (len(v) if isinstance(v, list) else v) for k, v in inbox.items()},
        "lost": len(senders.accepted_ids & set(inbox["missing"])),  # accepted (201), not in the inbox
        "notifications": {k: (len(v) if isinstance(v, (list, dict)) and k != "per_channel" else v)
                          for k, v in effects.items() if k != "crm"},
        "crm": {k: (len(v) if isinstance(v, list) else v) for k, v in crm.items()},
        "destinations": {k: {f: (len(x) if isinstance(x, list) else x) for f, x in v.items()}
                         for k, v in per_dest.items()} | {"bad_requests": len(dest["bad_requests"]),
                                                          "requests": dict(dests.requests)},
        "scheduled_sinks": {"runs": batches.ticks, "failed_runs": len(batches.errors),
                            "warehouse": {k: (len(v) if isinstance(v, list) else v) for k, v in warehouse.items()},
                            "mysql": {k: (len(v) if isinstance(v, list) else v) for k, v in mirrored.items()}},
        "duplicate_side_effects": sum(n - 1 for n in effects["duplicates"].values()) + dest_doubles,
        "lost_side_effects": len(effects["lost"]) + len(crm["contacts_missing"]) + len(crm["notes_missing_or_unlinked"])
        + dest_lost,
        "state_diffs": len(diffs) + len(inbox["wrong_status"]) + len(inbox["unexpected"]) + crm_diffs + dest_diffs
        + batch_diffs,
        "examples": {"state_diffs": diffs[:10], "inbox_missing": inbox["missing"][:10],
                     "inbox_wrong_status": inbox["wrong_status"][:10], "notifications_lost": effects["lost"][:10],
                     "duplicates": dict(list(effects["duplicates"].items())[:10]),
                     "kills": kill_examples, "crm": {k: v[:5] for k, v in crm.items() if isinstance(v, list)},
                     "destinations": {k: ({f: x[:5] for f, x in v.items() if isinstance(x, list) and x}
                                          if isinstance(v, dict) else v[:5]) for k, v in dest.items()},
                     "scheduled_sinks": {"errors": batches.errors[:5],
                                         **{f"{name} {f}": x[:5] for name, d in (("warehouse", warehouse),
                                                                                  ("mysql", mirrored))
                                            for f, x in d.items() if isinstance(x, list) and x}}},
        "timing_s": {"send": round(sent_s, 1), "processed": round(processed_s, 1), "replay": round(replay_s, 1),
                     "total": round(time.monotonic() - t_start, 1)},
        "deliveries_per_s": round(senders.sent / processed_s, 1) if processed_s else None,
    }
    report["ok"] = (report["lost"] == 0 and report["not_sent"] == 0 and report["duplicate_side_effects"] == 0
                    and report["state_diffs"] == 0
                    and report["lost_side_effects"] == 0 and senders.sent == len(deliveries) and drained)
    if s.report:
        Path(s.report).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print_summary(report, out)
    return report


def print_summary(r: dict, out=print) -> None:
    f = r["faults"]
    out("\nSoak report")
    for label, value in [
        ("deliveries sent", f"{r['deliveries_sent']} ({r['events']} events, {r['duplicates_sent']} duplicates, "
                            f"{r['sender_retries']} resent after 503/connection errors)"),
        ("faults injected", f"{f['faults_injected']}: {len(f['postgres_restarts'])} Postgres restarts, "
                            f"SMTP refusing {f['smtp_outage'].get('seconds', 0)}s ({f['smtp_refusals']} refusals), "
                            f"HubSpot {f['hubspot_errors']}, workers killed {f['workers_killed']}"),
        ("flows", f"{r['flows']} before replay; replay {r['replay']}"),
        ("lost", f"{r['lost']} accepted deliveries missing from the inbox"
                 + (f" ({r['not_sent']} events never sent: deadline)" if r["not_sent"] else "")),
        ("duplicate side effects", r["duplicate_side_effects"]),
        ("lost side effects", r["lost_side_effects"]),
        ("state diffs", f"{r['state_diffs']} (Postgres + inbox statuses + CRM vs ground truth)"),
        ("notifications", f"{r['notifications']['received']} received / {r['notifications']['expected']} expected "
                          f"{r['notifications']['per_channel']}, {r['notifications']['failure_alerts']} failure alert(s)"),
        ("CRM", f"{r['crm']['contacts']} contacts / {r['crm']['contacts_expected']}, "
                f"{r['crm']['notes']} notes / {r['crm']['notes_expected']}"),
        *[(f"  {name}", f"{d['got']} / {d['expected']}: lost {d['lost']}, doubles {d['doubles']}, "
                        f"unexpected {d['unexpected']}" + "".join(f", {k.replace('_', ' ')} {d[k]}" for k in
                                                                 ("wrong_tags", "wrong_date") if k in d))
          for name, d in r["destinations"].items() if isinstance(d, dict) and "got" in d],
        ("destination faults", f"{f['destination_faults']}; requests {r['destinations']['requests']}, "
                               f"refused as malformed {r['destinations']['bad_requests']}"),
        ("warehouse export", "{rows} rows in {files} Parquet files / {inbox_rows} inbox rows: missing {missing}, "
                             "doubled {doubled}, unexpected {unexpected}".format(**r["scheduled_sinks"]["warehouse"])),
        ("MySQL mirror", "{deliveries} deliveries / {expected}: missing {missing}, doubled {doubled}, "
                         "unexpected {unexpected}, row diffs {row_diffs}".format(**r["scheduled_sinks"]["mysql"])
         + f" ({r['scheduled_sinks']['runs']} scheduled runs, {r['scheduled_sinks']['failed_runs']} failed)"),
        ("duration", f"{r['timing_s']['total']}s total ({r['deliveries_per_s']} deliveries/s under faults)"),
    ]:
        out(f"  {label:<24} {value}")
    out(f"  {'result':<24} {'OK' if r['ok'] else 'FAILED'}")


def main() -> int:
    report = run(Settings())
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
