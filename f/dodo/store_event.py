# requirements:
# annotated-types==0.8.0
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Normalise one Dodo event and record it in Postgres: inbox row plus entity upserts, in
one transaction.

The entry flow's `record` step does both: normalising with the pydantic models
(f/dodo/lib/events.py) and recording in one Windmill job costs one Python process
instead of two (docs/internals.md, "The entry flow and its job budget"). The result
carries the normalised event for the sinks (`results.record.event`).
"""

from typing import Optional, TypedDict

from f.dodo.lib import db as pg
from f.dodo.lib import store
from f.dodo.lib.errors import EventError, EventRejected
from f.dodo.lib.normalizer import normalize_event


class postgresql(TypedDict):
    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str
    root_certificate_pem: str


def main(event: dict, db: postgresql, schema: str = "dodo", webhook_id: Optional[str] = None,
         delivery_attempt: Optional[str] = None, received: Optional[dict] = None) -> dict:
    raw = not ("category" in event and "occurred_at" in event)  # else already normalised
    normalized = _normalize(event, webhook_id) if raw else event
    with pg.connect(db, schema) as conn:  # after the CPU work: the connection is held only to record
        if normalized is None:  # the normaliser rejected it: recorded as failed, with its error
            result = store.record_delivery(conn, event, webhook_id, attempt=delivery_attempt)
        else:
            # the inbox keeps the delivery as received: the envelope itself, or `received`
            result = store.record_event(conn, normalized, attempt=delivery_attempt,
                                        received=event if raw else received)
    if result["status"] == "failed":  # recorded as failed in the inbox; fail the job, not retried
        raise EventRejected(result["webhook_id"], result.get("error") or "invalid event")
    return {**result, "event": normalized}


def _normalize(envelope: dict, webhook_id: Optional[str]) -> Optional[dict]:
    try:
        return normalize_event(envelope, webhook_id)
    except EventError:
        return None
