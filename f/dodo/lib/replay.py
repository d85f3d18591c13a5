"""Replay failed deliveries: pick inbox rows, run each through the entry flow again.

Each event is re-run as a job of the entry flow f/dodo/webhook (through the wmill
client), not by calling the library in-process: one code path. The event goes through
normalise, record (a failed or received inbox row is applied again, attempts + 1) and
both sinks exactly as a delivery does, with the flow's retries, failure module and job
log; the delivery ledger makes each sink skip the channels that already succeeded, so
only what failed is sent again. Events run one at a time, oldest event first, so state
converges in event-time order.

`received` rows are deliveries reset by store.reset_for_replay (or left mid-flight);
`failed` rows are dead letters: a step failed after its retries and the flow's failure
module marked them.

A Slack or SMS send of unknown outcome (ledger status `unknown`: it may have been
delivered) is never resent by a replay, unless `resend_unknown` is set: then the events
holding such sends are selected too, whatever their inbox status, and those sends are
released (ledger.release_unknown) and sent again, at the risk of a duplicate.

A delivery can also fail with no inbox row: Postgres was down longer than the record
step's retries and its failure module could not reach it either, or the preprocessor
rejected a genuine delivery while the signing secret was misconfigured. Windmill keeps
each failed run of the entry flow in its job history with the arguments it was created
with; `history_runs` reads them (jobs/completed/list) and `replay_history` re-runs each:
a trigger event (raw body and headers) is verified again with the current secrets first,
a run that was past its preprocessor is re-run with its verified inputs.

Every re-run is started with `skip_preprocessor=true` (f/dodo/lib/windmill_api.py):
Windmill runs a flow's preprocessor for any API call without it, and the preprocessor
wants a trigger event, not flow inputs.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from f.dodo.lib import ledger, windmill_api
from f.dodo.lib.errors import EventError, SignatureError
from f.dodo.lib.inert import defuse
from f.dodo.lib.normalizer import normalize_event
from f.dodo.lib.notify import delivery_key

ENTRY_FLOW = "f/dodo/webhook"
STATUSES = ("failed", "received")
MANUAL_PREFIX = "manual_"  # store.webhook_id_of: the inbox key of an event pasted in the UI
ERROR_SHOWN = 300

# run(args) -> (success, result, job id); progress(done, total)
Run = Callable[[dict], tuple[bool, Any, str]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Selection:
    """Which inbox rows to replay. Empty filters select everything; `event_types`
    take wildcards (dispute.*); the time range is on the event time, [since, until)."""
    webhook_ids: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    statuses: tuple[str, ...] = ("failed",)
    limit: int = 100
    resend_unknown: bool = False

    def __post_init__(self):
        bad = sorted(set(self.statuses) - set(STATUSES))
        if bad or not self.statuses:
            raise ValueError(f"status {bad or '[]'}: replay takes {list(STATUSES)}")
        if not 1 <= self.limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 instant ('2026-01-05T09:00:00Z', or a date); naive means UTC."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def select(conn, sel: Selection) -> list[dict]:
    """The selected inbox rows in event-time order (events without a time last)."""
    cur = conn.execute(
        """SELECT webhook_id, event_type, occurred_at, status, attempts, failed_step, last_error, payload
             FROM webhook_events
            WHERE (status = ANY(%(statuses)s)
                   OR (%(unknown)s AND EXISTS (SELECT 1 FROM delivery_ledger d
                        WHERE d.webhook_id = webhook_events.webhook_id AND d.status = 'unknown')))
              AND (%(ids)s::text[] IS NULL OR webhook_id = ANY(%(ids)s))
              AND (%(types)s::text[] IS NULL OR event_type LIKE ANY(%(types)s))
              AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)
              AND (%(until)s::timestamptz IS NULL OR occurred_at < %(until)s)
            ORDER BY occurred_at NULLS LAST, received_at, webhook_id
            LIMIT %(limit)s""",
        {"statuses": list(sel.statuses), "ids": list(sel.webhook_ids) or None,
         "types": [_like(t) for t in sel.event_types] or None, "since": sel.since, "until": sel.until,
         "limit": sel.limit, "unknown": sel.resend_unknown})
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def is_pasted(webhook_id: str) -> bool:
    return webhook_id.startswith(MANUAL_PREFIX)


def flow_args(row: dict, integrations: dict) -> dict:
    """The entry flow's inputs for a row: the delivery as received and its webhook-id.
    A pasted event is replayed as pasted (no webhook-id): the store derives the same
    inbox key from its content and the sinks the same ledger key. A fresh
    `delivery_attempt`, as the preprocessor gives each trigger run, lets a restarted
    record step of this run answer "recorded" again instead of "duplicate"."""
    args = {"event": row["payload"], **integrations, "delivery_attempt": uuid.uuid4().hex}
    if not is_pasted(row["webhook_id"]):
        args["webhook_id"] = row["webhook_id"]
    return args


def ledger_key(row: dict) -> str:
    """The key the sinks record this event's deliveries under (notify.delivery_key)."""
    webhook_id = None if is_pasted(row["webhook_id"]) else row["webhook_id"]
    try:
        return delivery_key(normalize_event(row["payload"], webhook_id))
    except EventError:  # the normaliser rejects it: no sink ever ran for it
        return row["webhook_id"]


def _channels(deliveries: list[dict], which: str) -> list[str]:
    """done (sent/skipped), unknown (may have been delivered: resent only when asked), or
    to_retry (the rest)."""
    group = {status: "done" for status in ledger.DONE} | {"unknown": "unknown"}
    return [f"{d['sink']}/{d['channel']}" for d in deliveries if group.get(d["status"], "to_retry") == which]


def describe(conn, row: dict) -> dict:
    """A table row: the event, its inbox state, the channels done and those to retry."""
    deliveries = ledger.rows(conn, ledger_key(row))
    at = row["occurred_at"]
    return {"webhook_id": row["webhook_id"], "event_type": row["event_type"],
            "occurred_at": at.isoformat().replace("+00:00", "Z") if at else None,
            "status": row["status"], "attempts": row["attempts"], "failed_step": row["failed_step"],
            "last_error": (row["last_error"] or "")[:ERROR_SHOWN] or None,
            "done": ", ".join(_channels(deliveries, "done")), "to_retry": ", ".join(_channels(deliveries, "to_retry")),
            "unknown": ", ".join(_channels(deliveries, "unknown"))}


def plan(conn, rows: list[dict]) -> list[dict]:
    """What a replay would do (the dry run): each event re-run through the entry flow,
    the channels already done skipped."""
    return [dict(describe(conn, r), action=f"run {ENTRY_FLOW}") for r in rows]


def _inbox_row(conn, webhook_id: str) -> dict:
    cur = conn.execute("SELECT webhook_id, event_type, occurred_at, status, attempts, failed_step, last_error, "
                       "payload FROM webhook_events WHERE webhook_id = %s", (webhook_id,))
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def replay(conn, rows: list[dict], run: Run, integrations: dict | None = None,
           progress: Progress | None = None, *, resend_unknown: bool = False) -> list[dict]:
    """Re-run each row through the entry flow, one at a time in the given order.
    A failing event is reported and the next one still runs. `resend_unknown` releases
    its sends of unknown outcome first, so they are sent again."""
    out = []
    for i, row in enumerate(rows):
        if resend_unknown:
            ledger.release_unknown(conn, [ledger_key(row)])
        before = describe(conn, row)
        ok, _, job_id = run(flow_args(row, integrations or {}))
        after = describe(conn, _inbox_row(conn, row["webhook_id"]))
        done_before = set(filter(None, before["done"].split(", ")))
        out.append(dict(after, status_before=before["status"], job=job_id, success=ok,
                        sent_now=", ".join(c for c in after["done"].split(", ") if c and c not in done_before)))
        if progress:
            progress(i + 1, len(rows))
    return out


# ---------------------------------------------------------------- Windmill's job history


@dataclass(frozen=True)
class FailedRun:
    """A failed run of the entry flow from Windmill's job history."""
    job: str
    created_at: str
    args: dict


def history_runs(since: datetime | None = None, limit: int = 100) -> list[FailedRun]:
    """Failed root runs of the entry flow, oldest first, with their arguments."""
    params = {"script_path_exact": ENTRY_FLOW, "success": "false", "has_null_parent": "true",
              "include_args": "true", "order_desc": "true", "per_page": str(limit)}
    if since:
        params["created_after"] = since.isoformat().replace("+00:00", "Z")
    runs = []
    for job in windmill_api.list_completed_jobs(**params):
        args = job.get("args")
        if args is None:  # an older Windmill lists jobs without their args
            args = windmill_api.get_job(job["id"]).get("args")
        if isinstance(args, dict):
            runs.append(FailedRun(job["id"], job.get("created_at") or "", args))
    return sorted(runs, key=lambda r: r.created_at)


def history_inputs(run: FailedRun, secrets: list[str], tolerance_s: int | None) -> dict:
    """The entry flow's verified inputs {event, webhook_id} of a failed run. A trigger
    event is verified again (SignatureError when it does not verify); timestamps are not
    checked (`tolerance_s` None): the run is old by nature, its signature is what counts."""
    from f.dodo.lib.signature import verify_trigger_event  # noqa: PLC0415

    event = run.args.get("event")
    if isinstance(event, dict) and event.get("kind") in ("webhook", "http"):
        verified = verify_trigger_event(event, secrets, tolerance_s if tolerance_s is not None else 10**12)
        return defuse(verified)
    return {"event": event, "webhook_id": run.args.get("webhook_id")}


def replay_history(conn, runs: list[FailedRun], secrets: list[str], run: Run, integrations: dict | None = None,
                   progress: Progress | None = None, dry_run: bool = False) -> list[dict]:
    """Re-run each failed run once per webhook-id, oldest first; runs whose delivery the
    inbox already holds as processed (a later retry went through) are skipped."""
    out, seen = [], set()
    for i, failed in enumerate(runs):
        row = {"job": failed.job, "created_at": failed.created_at}
        try:
            inputs = history_inputs(failed, secrets, None)
        except SignatureError as exc:
            out.append(dict(row, webhook_id=None, action=f"rejected: {exc}", success=False, replay_job=None))
            continue
        wid = inputs.get("webhook_id") or "(pasted event)"
        status = _inbox_status(conn, inputs["webhook_id"]) if inputs.get("webhook_id") else None
        if wid in seen or status in ("processed", "ignored"):
            out.append(dict(row, webhook_id=wid, action=f"skipped: {'already replayed' if wid in seen else status}",
                            success=True, replay_job=None))
            continue
        seen.add(wid)
        if dry_run:
            out.append(dict(row, webhook_id=wid, action=f"run {ENTRY_FLOW}", success=None, replay_job=None))
            continue
        args = {**inputs, **(integrations or {}), "delivery_attempt": uuid.uuid4().hex}
        args = {k: v for k, v in args.items() if v is not None}
        ok, _, job_id = run(args)
        out.append(dict(row, webhook_id=wid, action="re-run", success=ok, replay_job=job_id,
                        inbox_status=_inbox_status(conn, inputs.get("webhook_id"))))
        if progress:
            progress(i + 1, len(runs))
    return out


def _inbox_status(conn, webhook_id: str | None) -> str | None:
    if not webhook_id:
        return None
    row = conn.execute("SELECT status FROM webhook_events WHERE webhook_id = %s", (webhook_id,)).fetchone()
    return row and row[0]


# ---------------------------------------------------------------- through Windmill


def run_entry_flow(args: dict, *, poll_s: float = 0.25, max_poll_s: float = 2.0) -> tuple[bool, Any, str]:
    """Start the entry flow as its own job, without its preprocessor (the arguments are
    verified flow inputs), and wait for it (sequential: event order)."""
    job_id = windmill_api.run_flow_async(ENTRY_FLOW, args, skip_preprocessor=True)
    while True:
        job = windmill_api.get_job(job_id)
        if job.get("type") == "CompletedJob":
            return bool(job.get("success")), job.get("result"), job_id
        time.sleep(poll_s)
        poll_s = min(poll_s * 2, max_poll_s)


def report_progress(done: int, total: int) -> None:
    """Progress takes 0..99 while the job runs; Windmill sets 100 at the end."""
    windmill_api.set_progress(min(99, done * 100 // max(total, 1)))


def rich_result(rows: list[dict], dry_run: bool) -> dict:
    """Windmill rich result: a markdown summary and the per-event table."""
    if dry_run:
        head = f"### Replay (dry run): {len(rows)} event(s) would be re-run through {ENTRY_FLOW}"
    else:
        ok = sum(1 for r in rows if r["success"])
        head = f"### Replay: {len(rows)} event(s) re-run, {ok} succeeded, {len(rows) - ok} failed"
    parts: list[dict] = [{"markdown": head}]
    parts.append({"table-row-object": rows} if rows else {"markdown": "Nothing selected."})
    return {"render_all": parts}
