"""Delivery ledger: each side effect (webhook_id, sink, channel) happens once.

A row per delivery holds its status (pending | sent | failed | skipped), attempts, the
last error and the provider's id. `deliver_once` claims the row with INSERT .. ON
CONFLICT and SELECT .. FOR UPDATE, so concurrent workers on the same delivery run the
send one at a time and the later one sees it done; a replay skips what was sent or
skipped and retries only what failed. The table comes from the migration
f/dodo/lib/migrations/v010_delivery_ledger.py; like every store table it is found
through the connection's search_path (f.dodo.lib.db.connect sets it to the schema).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from psycopg.types.json import Jsonb

from f.dodo.lib import db

DONE = ("sent", "skipped")
ERROR_MAX = 1000

# What a send returns: the provider's message id (str), None, or
# {"status": "sent"|"skipped", "external_id": ..., "detail": {...}}.
Send = Callable[[], Any]


def connect(postgresql: dict | None, schema: str = "dodo"):
    """The ledger's connection: the `postgresql` resource, else $DATABASE_URL, else None
    (no database configured: deliveries run without dedupe)."""
    target = postgresql or os.environ.get("DATABASE_URL")
    return db.connect(target, schema) if target else None


def _outcome(value: Any) -> tuple[str, str | None, dict | None]:
    if isinstance(value, dict):
        return value.get("status", "sent"), value.get("external_id"), value.get("detail")
    return "sent", None if value is None else str(value), None


def deliver_once(conn, webhook_id: str, sink: str, channel: str, send: Send) -> dict:
    """Run `send` unless this delivery already succeeded; record the outcome.

    Returns {"status", "attempts", "external_id", "error", "replayed"}; a failed send is
    recorded and returned (status "failed"), not raised, so the caller can try the other
    channels before failing its step. `conn` None means no ledger: send, no dedupe.
    """
    if conn is None:
        try:
            status, external_id, _ = _outcome(send())
            return {"status": status, "attempts": 1, "external_id": external_id, "error": None, "replayed": False}
        except Exception as exc:  # noqa: BLE001 - reported to the caller as data
            return {"status": "failed", "attempts": 1, "external_id": None, "error": _error(exc), "replayed": False}
    key = (webhook_id, sink, channel)
    done = conn.execute("SELECT status, attempts, external_id FROM delivery_ledger "
                        "WHERE webhook_id = %s AND sink = %s AND channel = %s", key).fetchone()
    if done and done[0] in DONE:  # final states: no lock needed to trust them
        return {"status": done[0], "attempts": done[1], "external_id": done[2], "error": None, "replayed": True}
    with conn.transaction():
        conn.execute("INSERT INTO delivery_ledger (webhook_id, sink, channel) VALUES (%s, %s, %s) "
                     "ON CONFLICT DO NOTHING", key)
    with conn.transaction():
        status, attempts, external_id = conn.execute(
            "SELECT status, attempts, external_id FROM delivery_ledger "
            "WHERE webhook_id = %s AND sink = %s AND channel = %s FOR UPDATE", key).fetchone()
        if status in DONE:
            return {"status": status, "attempts": attempts, "external_id": external_id,
                    "error": None, "replayed": True}
        try:
            status, external_id, detail = _outcome(send())
            error = None
        except Exception as exc:  # noqa: BLE001 - recorded, then reported
            status, external_id, detail, error = "failed", None, None, _error(exc)
        conn.execute(
            "UPDATE delivery_ledger SET status = %s, attempts = attempts + 1, last_error = %s, "
            "external_id = %s, detail = COALESCE(%s, detail), updated_at = now() "
            "WHERE webhook_id = %s AND sink = %s AND channel = %s",
            (status, error, external_id, None if detail is None else Jsonb(detail), *key))
    return {"status": status, "attempts": attempts + 1, "external_id": external_id,
            "error": error, "replayed": False}


def enqueue(conn, webhook_id: str, sink: str, channel: str, detail: dict) -> bool:
    """Record a pending delivery for later (the daily digest); False if already recorded."""
    with conn.transaction():
        cur = conn.execute("INSERT INTO delivery_ledger (webhook_id, sink, channel, detail) "
                           "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                           (webhook_id, sink, channel, Jsonb(detail)))
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


def rows(conn, webhook_id: str) -> list[dict]:
    """Every ledger row of one delivery (for results, the demo and tests)."""
    cur = conn.execute("SELECT sink, channel, status, attempts, last_error, external_id "
                       "FROM delivery_ledger WHERE webhook_id = %s ORDER BY sink, channel", (webhook_id,))
    cols = ("sink", "channel", "status", "attempts", "last_error", "external_id")
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX]


