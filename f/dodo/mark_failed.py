# requirements:
# annotated-types==0.8.0
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Failure module of the entry and record flows: mark the delivery failed in the inbox.

Windmill runs it after a failed step, inside each failing branch of the fan-out (with
that branch's step id), and after a failed preprocessor, unless the preprocessor itself
rejected the request (unsigned, forged, stale: the flow's `skip_if` on
`error.extra.rejected` makes this module an identity job, no process). What still comes
here from the preprocessor: a delivery the worker could not even hand to it (its body
holds `$var:<missing path>`-like text, which the worker resolves and fails on, genuine or
not), or a preprocessor that failed for another reason (Windmill's API unreachable). So
on that path the delivery is verified again here, from `delivery`: the raw body and
headers as JSON text, which the worker never resolves (`event.body` would be resolved
again and fail the same way). A genuine one is recorded as failed with its defused body,
for replay; nothing unverified is written, and an unverified one imports only the
standard library and the verification modules.
"""

import json
from typing import Optional

from f.dodo.lib.resources import postgresql

PREPROCESSOR = "preprocessor"


def main(message: str, step_id: str, db: postgresql, event: Optional[dict] = None,
         webhook_id: Optional[str] = None, name: Optional[str] = None, delivery: Optional[str] = None,
         schema: str = "dodo") -> dict:
    error = f"{name}: {message}" if name and not message.startswith(name) else message
    if delivery is not None or step_id == PREPROCESSOR:  # the raw trigger event: nothing verified it
        return preprocessor_failed(message, error, delivery, db, schema)
    from f.dodo.lib import db as pg  # noqa: PLC0415 - only a verified delivery reaches Postgres
    from f.dodo.lib import store  # noqa: PLC0415

    event = event if isinstance(event, dict) else {}
    with pg.connect(db, schema, check=False) as conn:  # record the failure even when the schema is behind
        return alerted(conn, store.mark_failed(conn, inbox_key(event, webhook_id), error, step_id or "unknown",
                                               event=event))


def preprocessor_failed(message: str, error: str, delivery: Optional[str], db: postgresql, schema: str) -> dict:
    """Record a genuine delivery whose preprocessor failed; reject anything else."""
    from f.dodo.lib.errors import SignatureError  # noqa: PLC0415
    from f.dodo.lib.signature import DEFAULT_TOLERANCE_S, verify_trigger_event  # noqa: PLC0415
    from f.dodo.lib.workspace import webhook_secrets, webhook_tolerance_s  # noqa: PLC0415

    try:
        trigger = json.loads(delivery) if delivery else None
        inputs = verify_trigger_event(trigger, webhook_secrets(), webhook_tolerance_s(DEFAULT_TOLERANCE_S))
    except (SignatureError, ValueError):  # unverified request: nothing of it may reach the inbox
        return {"status": "rejected", "error": message}
    from f.dodo.lib import db as pg  # noqa: PLC0415
    from f.dodo.lib import store  # noqa: PLC0415
    from f.dodo.lib.inert import defuse  # noqa: PLC0415

    with pg.connect(db, schema, check=False) as conn:
        return alerted(conn, store.mark_failed(conn, inputs["webhook_id"], error, PREPROCESSOR,
                                               event=defuse(inputs["event"])))


def alerted(conn, failed: dict) -> dict:
    """The flow's own error handler tells a person, once per delivery, with the replay
    command: Windmill never calls the workspace error handler for a flow that has a
    failure module (f/dodo/lib/alerting.py). This runs after the step's retries."""
    import os  # noqa: PLC0415

    from f.dodo.lib import alerting  # noqa: PLC0415

    return {**failed, "alert": alerting.alert_delivery(conn, failed["webhook_id"],
                                                       os.environ.get("WM_ROOT_FLOW_JOB_ID", ""))}


def inbox_key(event: dict, webhook_id: Optional[str]) -> str:
    """The inbox row's key: the webhook-id, else the key the store gives a pasted event."""
    from f.dodo.lib import store  # noqa: PLC0415
    from f.dodo.lib.normalizer import normalize_event  # noqa: PLC0415

    if webhook_id:
        return webhook_id
    try:
        return store.webhook_id_of(normalize_event(event, None))
    except Exception:  # noqa: BLE001 - an event the normaliser rejects still gets a row
        return store.webhook_id_of(event if isinstance(event, dict) else {})
