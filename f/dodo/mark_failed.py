# requirements:
# annotated-types==0.8.0
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Failure module of the entry and record flows: mark the delivery failed in the inbox."""

from typing import Optional

from f.dodo.lib import db as pg
from f.dodo.lib import store
from f.dodo.lib.normalizer import normalize_event
from f.dodo.lib.resources import postgresql


def inbox_key(event: dict, webhook_id: Optional[str]) -> str:
    """The inbox row's key: the webhook-id, else the key the store gives a pasted event."""
    if webhook_id:
        return webhook_id
    try:
        return store.webhook_id_of(normalize_event(event, None))
    except Exception:  # noqa: BLE001 - an event the normaliser rejects still gets a row
        return store.webhook_id_of(event if isinstance(event, dict) else {})


def main(message: str, step_id: str, db: postgresql, event: Optional[dict] = None,
         webhook_id: Optional[str] = None, name: Optional[str] = None, schema: str = "dodo") -> dict:
    if step_id == "preprocessor":  # unverified request: nothing of it may reach the inbox
        return {"status": "rejected", "error": message}
    event = event if isinstance(event, dict) else {}
    error = f"{name}: {message}" if name and not message.startswith(name) else message
    with pg.connect(db, schema, check=False) as conn:  # record the failure even when the schema is behind
        return store.mark_failed(conn, inbox_key(event, webhook_id), error, step_id or "unknown", event=event)
