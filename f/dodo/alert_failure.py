# requirements:
# psycopg2-binary==2.9.13
"""Workspace error handler: tell a person about a failed delivery (once), with the replay command."""

from typing import Optional

from f.dodo.lib import alerting, ledger
from f.dodo.lib import workspace as ws


def main(
    workspace_id: str = "",
    job_id: str = "",
    path: str = "",
    is_flow: bool = False,
    started_at: Optional[str] = None,
    email: Optional[str] = None,
    schedule_path: Optional[str] = None,
    failed_times: Optional[int] = None,
    error: Optional[dict] = None,  # a dict from a failed step; a string from a rejected request
    webhook_id: Optional[str] = None,
    status: Optional[str] = None,
    attempts: Optional[int] = None,
    schema: str = "dodo",
) -> dict:
    db = ws.optional_resource(ws.POSTGRES)
    conn = ledger.connect(db, schema)
    try:
        event = alerting.alert_for(conn, path=path, job_id=job_id, webhook_id=webhook_id, status=status,
                                   error=error, schedule_path=schedule_path)
        if event is None:
            return {"alerted": False, "why": "a rejected (unsigned or forged) request pages nobody"}
        return {"alerted": True, **alerting.send(conn, event)}
    finally:
        if conn:
            conn.close()
