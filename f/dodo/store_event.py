# requirements:
# psycopg2-binary==2.9.13
"""Record one Dodo event in Postgres: inbox row plus entity upserts, in one transaction."""

from typing import Optional, TypedDict

from f.dodo.lib import db as pg
from f.dodo.lib import store
from f.dodo.lib.errors import EventRejected


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
    with pg.connect(db, schema) as conn:
        if "category" in event and "occurred_at" in event:  # already normalised
            result = store.record_event(conn, event, attempt=delivery_attempt, received=received)
        else:  # a raw envelope: normalise here and save a job
            result = store.record_delivery(conn, event, webhook_id, attempt=delivery_attempt)
    if result["status"] == "failed":  # recorded as failed in the inbox; fail the job, not retried
        raise EventRejected(result["webhook_id"], result.get("error") or "invalid event")
    return result
