"""Recording from Python: one normalised event into Postgres, exactly once, in event-time order.

The entry flow's record step is SQL (f/dodo/record_delivery.pg.sql: the preprocessor
builds the call, f/dodo/lib/record_call.py). This module records from Python where no
preprocessor ran: the flow's `normalize_record` step (UI runs, replays, a delivery the
normaliser rejected), the sink flow f/dodo/record, tools and tests; and it marks rows
failed (the failure module) and resets them for replay.

`record_event(conn, event)` turns the normalised event into the same call
(`record_call.build_call`) and calls the server-side function `record_event(jsonb)`
(migration v002): one round trip, one transaction. It returns

    {"status": "recorded" | "duplicate" | "failed",
     "webhook_id": str,
     "inbox_status": "processed" | "ignored" | "failed" (the inbox row's status now),
     "attempts": int,          # deliveries of this webhook_id that reached the store
     "applied": bool,          # this call gave the entity row this event's state
     "rerun": True,            # only when the same delivery attempt recorded it before
     "error": str}             # only when status is "failed"

Duplicates are per delivery attempt, not per call: `attempt` (the entry flow run's key,
the preprocessor's `delivery_attempt`) is kept on the inbox row, and the same attempt
recording again (its record step restarted or retried after the commit) answers
"recorded" with `rerun` and changes nothing, so that run goes on to its sinks. Another
attempt, or none (UI runs), gets "duplicate".

An event missing a required id, or with a malformed amount or time, is recorded in the
inbox as failed with its error and changes no entity. A delivery whose inbox row is
failed (or reset to received by replay) is applied again when it comes back.
"""
from __future__ import annotations

import functools
import json
from typing import Any

from f.dodo.lib import db
from f.dodo.lib.errors import EventError
from f.dodo.lib.event_types import category_of
from f.dodo.lib.inert import pg_json, pg_text
# the call itself is built without the driver (the preprocessor builds it too); re-exported
from f.dodo.lib.record_call import (ERROR_MAX, STEP, _str, _time, build_call, delivery_of,  # noqa: F401
                                    webhook_id_of)


@functools.cache
def _function(schema: str | None) -> str:
    name = db.ident(schema, "record_event") if schema else db.ident("record_event")
    return f"SELECT {name}(%s::jsonb)"


def record_event(conn: db.Connection, event: dict, *, schema: str | None = None,
                 attempt: str | None = None, received: dict | None = None) -> dict:
    """Record one normalised event (see the module docstring for the result).

    `conn` comes from f.dodo.lib.db.connect (search_path = the schema), or pass `schema`.
    `attempt` is the delivery attempt's key (the entry flow's `delivery_attempt`), if any.
    `received` is the delivery as received (the entry flow's verified `event`): the inbox
    keeps it as its payload, extra keys and timestamps untouched; without it (a pasted
    normalised event) the payload is rebuilt from the event (`delivery_of`).
    A database-level rejection of the values (e.g. an amount beyond bigint) is recorded
    as a failed event rather than raised.
    """
    call = build_call(event, received)
    if attempt:
        call["attempt"] = attempt
    try:
        result = _call(conn, call, schema)
        return dict(result, test=True) if call.get("test") else result
    except (db.DataError, db.IntegrityError) as exc:
        if "error" in call:
            raise
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:ERROR_MAX]
        bare = {k: call[k] for k in ("webhook_id", "event_type", "category", "business_id", "occurred_at", "attempt")
                if k in call}
        return _call(conn, dict(bare, payload=_storable(call["payload"]), error=error, step=STEP), schema)


def _call(conn: db.Connection, call: dict, schema: str | None) -> dict:
    query = _function(schema)
    arg = db.Json(call, dumps=_dumps)
    if conn.autocommit:  # the function call is itself one transaction: one round trip
        return conn.execute(query, [arg], prepare=True).fetchone()[0]
    with conn.transaction():
        return conn.execute(query, [arg], prepare=True).fetchone()[0]


def _dumps(value: Any) -> str:
    """JSON Postgres accepts (f/dodo/lib/inert.py pg_json): a NUL or a lone surrogate
    anywhere in a delivery (a customer's name, a metadata key) becomes U+FFFD instead of
    failing the whole event, or the failure module that records it."""
    return pg_json(value)


def _storable(event: Any) -> Any:
    """The event as JSON Postgres accepts."""
    return json.loads(pg_json(event))


_text = pg_text


def record_delivery(conn: db.Connection, envelope: dict, webhook_id: str | None = None, *,
                    schema: str | None = None, attempt: str | None = None) -> dict:
    """Normalise a raw Dodo delivery and record it; a delivery the normaliser rejects
    (e.g. a missing required id) is recorded in the inbox as failed with its error."""
    from f.dodo.lib.normalizer import normalize_event  # the events module; imported late on purpose

    try:
        event = normalize_event(envelope, webhook_id)
    except EventError as exc:
        event_type = _str(envelope.get("type")) if isinstance(envelope, dict) else None
        bad = {"event_type": event_type or "unknown", "category": category_of(event_type),
               "webhook_id": webhook_id, "occurred_at": envelope.get("timestamp") if isinstance(envelope, dict) else None,
               "data": envelope.get("data") if isinstance(envelope, dict) else None}
        call = build_call(bad)
        call.update(payload=_storable(envelope), error=str(exc)[:ERROR_MAX], step="normalize")
        call.pop("table", None)
        if attempt:
            call["attempt"] = attempt
        return _call(conn, call, schema)
    return record_event(conn, event, schema=schema, attempt=attempt, received=envelope)


def _inbox(schema: str | None) -> str:
    return db.ident(schema, "webhook_events") if schema else db.ident("webhook_events")


def mark_failed(conn: db.Connection, webhook_id: str, error: str, step: str, *,
                event: dict | None = None, schema: str | None = None) -> dict:
    """Mark an inbox row failed with its error and the failing step (the flow's failure
    module). The row is created if the event never reached the store. Returns
    {"webhook_id", "status": "failed", "attempts"}."""
    ev = event if isinstance(event, dict) else {}
    event_type = _str(ev.get("event_type")) or _str(ev.get("type")) or "unknown"
    occurred = _time(ev, "occurred_at") or _time(ev, "timestamp")
    query = """
        INSERT INTO {t} (webhook_id, event_type, category, occurred_at, payload, status, last_error, failed_step)
        VALUES (%(w)s, %(type)s, %(cat)s, %(at)s, %(payload)s, 'failed', %(err)s, %(step)s)
        ON CONFLICT (webhook_id) DO UPDATE SET status = 'failed', last_error = excluded.last_error,
            failed_step = excluded.failed_step, processed_at = NULL
        RETURNING webhook_id, status, attempts""".format(t=_inbox(schema))
    params = {"w": _text(webhook_id), "type": _text(event_type), "cat": category_of(event_type), "at": occurred,
              "payload": db.Json(delivery_of(ev) if "category" in ev else ev, dumps=_dumps),
              "err": _text(str(error)[:ERROR_MAX]), "step": _text(step)}
    with conn.transaction():
        w, status, attempts = conn.execute(query, params).fetchone()
    return {"webhook_id": w, "status": status, "attempts": attempts}


def reset_for_replay(conn: db.Connection, webhook_ids: list[str] | None = None, *,
                     schema: str | None = None, limit: int = 100) -> list[dict]:
    """Move failed inbox rows back to `received` so the next delivery of each applies
    again; returns their {webhook_id, payload, attempts}. All failed rows (oldest first,
    up to `limit`) when `webhook_ids` is None."""
    query = """
        UPDATE {t} SET status = 'received', last_error = NULL, failed_step = NULL
         WHERE webhook_id IN (SELECT webhook_id FROM {t} WHERE status = 'failed'
                                 AND (%(ids)s::text[] IS NULL OR webhook_id = ANY(%(ids)s))
                               ORDER BY received_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
        RETURNING webhook_id, payload, attempts""".format(t=_inbox(schema))
    with conn.transaction():
        rows = conn.execute(query, {"ids": webhook_ids, "limit": limit}).fetchall()
    return [{"webhook_id": w, "payload": p, "attempts": a} for w, p, a in rows]
