"""Delivery ledger: each side effect (webhook_id, sink, channel) happens once.

A row per delivery holds its status (pending | sending | sent | failed | skipped | unknown),
attempts, the last error and the provider's id. `deliver_once` never keeps a
transaction open while the provider is called:

1. claim (after reading the row: a replay of a done delivery stops there): one
   committed statement sets the row to 'sending' with a random `claim`
   token and a lease (`lease_until` = now + `lease` seconds, Postgres's clock), and
   counts the attempt. Only a pending or failed row, or one whose lease expired (its
   sender died), can be claimed, so of concurrent workers exactly one wins.
2. send, with no transaction open (a send that uses the connection gets autocommit:
   a transaction-scoped lock it takes ends with its statement; use a session lock).
3. record 'sent' / 'skipped' (or 'failed' with the error) where the claim still
   holds, reconnecting and retrying for up to `patience` seconds when the connection
   was lost (a Postgres restart between the provider's acceptance and this write no
   longer turns the row back to pending, so the retried step does not send again).

A worker that finds another's live lease does not send: it polls for up to `wait`
seconds and returns the final status, else {"status": "in_progress"} (the caller's step
should fail and retry later). A replay skips what was sent or skipped and retries only
what failed. The table comes from migrations v010 and v011 (lease columns); like every
store table it is found through the connection's search_path (f.dodo.lib.db.connect).

Unknown outcomes (at most once): a send that raises `OutcomeUnknown` (a Slack or Twilio
POST that may have been delivered: they take no idempotency key) is recorded 'unknown'
and never claimed again: it is reported (`status: unknown` in the result) and stays so
until `release_unknown` (replay's explicit `resend_unknown`) turns it back to 'failed'.

Remaining window, at-least-once: if the provider accepted the message and the process
then dies (or Postgres stays unreachable longer than `patience`) before 'sent' is
written, the row stays 'sending' until its lease expires, and the next attempt sends
again. The lease must outlast the slowest send, retries included (LEASE_S); a sender
still alive past its lease can race the one that reclaimed it. Likewise a provider that
accepted but whose answer was lost (a timeout) is recorded 'failed' and sent again,
unless the send raises OutcomeUnknown (Slack, Twilio: recorded 'unknown', see above).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable  # not typing: see resources.py

from f.dodo.lib import db
from f.dodo.lib.errors import OutcomeUnknown, is_permanent
from f.dodo.lib.inert import pg_json, pg_text

DONE = ("sent", "skipped")
ERROR_MAX = 1000
LEASE_S = 900.0  # > the slowest send: HubSpot's 3 calls x 5 tries with Retry-After waits
WAIT_S = 30.0  # how long a worker waits on another's live lease before 'in_progress'
PATIENCE_S = 120.0  # how long recording an outcome keeps reconnecting (a Postgres restart)

# What a send returns: the provider's message id (str), None, or
# {"status": "sent"|"skipped", "external_id": ..., "detail": {...}, "error": <a warning
# kept in last_error, e.g. recipients an SMTP server refused>}.
Send = Callable[..., object]  # send() or, with_attempt, send(attempt)
Connect = Callable[[], db.Connection]

_CLAIM = """
INSERT INTO delivery_ledger AS d (webhook_id, sink, channel, status, attempts, claim, claimed_at, lease_until)
VALUES (%(w)s, %(s)s, %(c)s, 'sending', 1, %(claim)s, now(), now() + make_interval(secs => %(lease)s))
ON CONFLICT (webhook_id, sink, channel) DO UPDATE
SET status = 'sending', attempts = d.attempts + 1, claim = EXCLUDED.claim, claimed_at = EXCLUDED.claimed_at,
    lease_until = EXCLUDED.lease_until, updated_at = now()
WHERE d.status IN ('pending', 'failed') OR (d.status = 'sending' AND d.lease_until <= now())
RETURNING attempts"""
_STATE = """
SELECT status, attempts, external_id, claim, lease_until > now(), last_error FROM delivery_ledger
WHERE webhook_id = %(w)s AND sink = %(s)s AND channel = %(c)s"""
# A success may also close a row another worker reclaimed after our lease expired: it was
# delivered; a failure is written only under our own claim.
_RECORD = """
UPDATE delivery_ledger SET status = %(status)s, last_error = %(error)s, external_id = %(external_id)s,
    detail = COALESCE(%(detail)s, detail), claim = NULL, lease_until = NULL, updated_at = now()
WHERE webhook_id = %(w)s AND sink = %(s)s AND channel = %(c)s
  AND (claim = %(claim)s OR (%(ok)s AND status NOT IN ('sent', 'skipped')))"""



def connect(postgresql: dict | None, schema: str = "dodo"):
    """The ledger's connection: the `postgresql` resource, else $DATABASE_URL, else None
    (no database configured: deliveries run without dedupe)."""
    target = postgresql or os.environ.get("DATABASE_URL")
    return db.connect(target, schema) if target else None


def _outcome(value: object) -> tuple[str, str | None, dict | None, str | None]:
    if isinstance(value, dict):
        return value.get("status", "sent"), value.get("external_id"), value.get("detail"), value.get("error")
    return "sent", None if value is None else str(value), None, None


def _result(status: str, attempts: int, external_id=None, error=None, replayed=False, permanent=False) -> dict:
    out = {"status": status, "attempts": attempts, "external_id": external_id, "error": error,
           "replayed": replayed}
    if permanent:  # the send's error cannot be cured by retrying (errors.RETRY_IF)
        out["permanent"] = True
    return out


def deliver_once(conn, webhook_id: str, sink: str, channel: str, send: Send, *,
                 lease: float = LEASE_S, wait: float = WAIT_S, patience: float = PATIENCE_S,
                 reconnect: Connect | None = None, with_attempt: bool = False) -> dict:
    """Run `send` unless this delivery already succeeded or is being sent; record the outcome.

    Returns {"status", "attempts", "external_id", "error", "replayed"}; status is sent,
    skipped, failed (recorded and returned, not raised, so the caller can try its other
    channels before failing its step), unknown (see the module docstring) or in_progress
    (another worker holds a live lease). `with_attempt` calls `send(attempt)` with this
    claim's attempt number (1 = nothing was tried before). `conn` None means no ledger:
    send, no dedupe. Otherwise `conn` must be outside any transaction (the claim commits
    before the send); `reconnect` opens a replacement when it is lost (default: the same
    parameters, password included).
    """
    if conn is None:
        result = _send(send, 1, with_attempt)
        result.pop("detail")
        return result
    if conn.closed and not conn.broken:
        raise ValueError("deliver_once got a closed connection")
    if not conn.closed and conn.info.transaction_status != db.TX_IDLE:
        raise ValueError("deliver_once needs a connection outside any transaction: the claim commits first")
    key = {"w": webhook_id, "s": sink, "c": channel, "claim": os.urandom(16).hex()}  # not uuid: its import costs a job ~1 ms
    with _Link(conn, reconnect or _reconnector(conn), patience) as link:
        claimed = _claim(link, key, lease, wait)
        if isinstance(claimed, dict):
            return claimed
        result = _send(send, claimed, with_attempt)
        detail = result.pop("detail")
        link.run(_RECORD, key | {"status": result["status"], "error": result["error"],
                                 "external_id": result["external_id"],
                                 "detail": None if detail is None else db.Json(detail, dumps=pg_json),
                                 "ok": result["status"] in DONE}, fetch=False)
    return result


def _send(send: Send, attempt: int, with_attempt: bool) -> dict:
    """Call the provider; its outcome (never raised) with the detail to record."""
    permanent = False
    try:
        status, external_id, detail, error = _outcome(send(attempt) if with_attempt else send())
    except OutcomeUnknown as exc:
        status, external_id, detail, error = "unknown", None, None, _error(exc)
    except Exception as exc:  # noqa: BLE001 - recorded, then reported
        status, external_id, detail, error = "failed", None, None, _error(exc)
        permanent = is_permanent(exc)  # the caller's step is not retried (errors.RETRY_IF)
    return _result(status, attempt, external_id, error, permanent=permanent) | {"detail": detail}


def _claim(link: "_Link", key: dict, lease: float, wait: float) -> int | dict:
    """The attempt number once this worker holds the lease, or the result to return instead."""
    deadline, delay = time.monotonic() + wait, 0.02
    while True:
        state = link.run(_STATE, key)  # read first: a replay needs one cheap statement
        if state is not None:
            status, attempts, external_id, claim, live, last_error = state
            if status in DONE:
                return _result(status, attempts, external_id, replayed=True)
            if status == "unknown":  # never resent blindly: release_unknown first
                return _result(status, attempts, external_id, last_error, replayed=True)
            if status == "sending" and claim == key["claim"]:
                return attempts  # our claim committed but its answer was lost with the connection
            if status == "sending" and live:
                if time.monotonic() + delay > deadline:
                    return _result("in_progress", attempts, error="being sent by another worker")
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
                continue
        row = link.run(_CLAIM, key | {"lease": float(lease)})
        if row:
            return row[0]
        # another worker claimed or finished it in between: look again


class _Link:
    """The caller's connection, replaced by a fresh one when it is lost (a Postgres restart)."""

    def __init__(self, conn, reconnect: Connect, patience: float):
        self.conn, self._caller, self._reconnect, self._patience = conn, conn, reconnect, patience

    def __enter__(self) -> "_Link":
        return self

    def __exit__(self, *exc) -> None:
        if self.conn is not self._caller:
            self.conn.close()

    def run(self, query: str, params: dict, fetch: bool = True):
        """Run one statement, committed, and return its row; on a lost connection reconnect
        and run it again (each statement here can run twice: the claim token makes a repeat
        harmless)."""
        deadline, delay = time.monotonic() + self._patience, 0.05
        while True:
            try:
                if self.conn.closed:
                    self._replace()
                cur = self.conn.execute(query, params)
                row = cur.fetchone() if fetch else None
                if not self.conn.autocommit:
                    self.conn.commit()
                return row
            except db.OperationalError:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _replace(self) -> None:
        fresh = self._reconnect()
        if self.conn is not self._caller:
            self.conn.close()
        self.conn = fresh


def _reconnector(conn) -> Connect:
    # Read when needed (a lost connection still knows them): the parameters, search_path
    # in `options`, and the password.
    return lambda: db.reconnect(conn)


def enqueue(conn, webhook_id: str, sink: str, channel: str, detail: dict) -> bool:
    """Record a pending delivery for later (the daily digest); False if already recorded."""
    with conn.transaction():
        cur = conn.execute("INSERT INTO delivery_ledger (webhook_id, sink, channel, detail) "
                           "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                           (webhook_id, sink, channel, db.Json(detail, dumps=pg_json)))
        return cur.rowcount == 1


def pending(conn, sink: str, channel: str, *, limit: int = 500) -> list[dict]:
    """Pending and failed rows of one sink/channel, oldest first (for digests and replays)."""
    cur = conn.execute(
        "SELECT webhook_id, status, attempts, last_error, detail, created_at FROM delivery_ledger "
        "WHERE sink = %s AND channel = %s AND status IN ('pending', 'failed') "
        "ORDER BY created_at, webhook_id LIMIT %s", (sink, channel, limit))
    cols = ("webhook_id", "status", "attempts", "last_error", "detail", "created_at")
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def mark(conn, webhook_ids: list[str], sink: str, channel: str, status: str,
         external_id: str | None = None) -> None:
    """Set the outcome of several deliveries at once (a digest that covered them)."""
    with conn.transaction():
        conn.execute("UPDATE delivery_ledger SET status = %s, external_id = %s, attempts = attempts + 1, "
                     "updated_at = now() WHERE sink = %s AND channel = %s AND webhook_id = ANY(%s)",
                     (status, external_id, sink, channel, webhook_ids))


def release_unknown(conn, webhook_ids: list[str], sink: str | None = None) -> int:
    """Turn 'unknown' deliveries of these events back to 'failed', so the next run sends
    them again (the explicit choice to risk a duplicate); returns how many."""
    cur = conn.execute(
        "UPDATE delivery_ledger SET status = 'failed', updated_at = now(), "
        "last_error = 'released for resend; was: ' || coalesce(last_error, 'unknown') "
        "WHERE status = 'unknown' AND webhook_id = ANY(%s) AND (%s::text IS NULL OR sink = %s)",
        (webhook_ids, sink, sink))
    if not conn.autocommit:
        conn.commit()
    return cur.rowcount


def report_unknown(key: str, results: dict) -> dict:
    """{"unknown": {channel: why}} for the sends of unknown outcome among `results`
    (channel -> deliver_once result), each also a warning line in the job's log; {} when
    there are none."""
    unknown = {ch: r.get("error") or "outcome unknown" for ch, r in results.items() if r.get("status") == "unknown"}
    for ch, why in unknown.items():
        print(f"WARNING delivery {key} {ch}: outcome unknown, not resent ({why}); check the channel, "
              "then replay with resend_unknown to send it again", file=sys.stderr)
    return {"unknown": unknown} if unknown else {}


def rows(conn, webhook_id: str) -> list[dict]:
    """Every ledger row of one delivery (for results, the demo and tests)."""
    cur = conn.execute("SELECT sink, channel, status, attempts, last_error, external_id "
                       "FROM delivery_ledger WHERE webhook_id = %s ORDER BY sink, channel", (webhook_id,))
    cols = ("sink", "channel", "status", "attempts", "last_error", "external_id")
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _error(exc: Exception) -> str:
    return pg_text(f"{type(exc).__name__}: {exc}"[:ERROR_MAX])


# -- the local runner's outbox -----------------------------------------------------------
# Here, not in channels.py, because every sink's step records an unconfigured delivery
# and already imports the ledger: the crm step need not import (on a worker: fetch and
# compile) the notification transports for this one function.
UNCONFIGURED = "unconfigured"


def outbox_path() -> str | None:
    """The local runner's outbox file (DODO_OUTBOX), or None: on Windmill a job's working
    directory is deleted after the job, so a file written there would be lost."""
    return os.environ.get("DODO_OUTBOX") or None


def to_outbox(kind: str, record: dict) -> str:
    """What would have been sent, for an unconfigured channel: appended to the local
    runner's outbox (JSONL) when DODO_OUTBOX names one; returns its path, or
    UNCONFIGURED when nothing is written (the ledger row records the skip in Postgres)."""
    path = outbox_path()
    if path is None:
        return UNCONFIGURED
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    line = json.dumps({"kind": kind, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record},
                      default=str, ensure_ascii=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return path
