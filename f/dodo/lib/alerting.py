"""Failure alerts: a delivery that failed after its retries reaches a person, once.

`f/dodo/alert_failure` is the workspace error handler (Workspace settings -> Error
handler -> custom script). Windmill calls it for every failed job with the failed job's
result merged into its arguments (windmill-labs/windmill backend/windmill-queue/src/
jobs.rs, `push_error_handler` + `sanitize_result`: `workspace_id, job_id, path, is_flow,
started_at, email`, `schedule_path` for a scheduled job, then the result's keys). For
the entry flow the result is its failure module's (`f/dodo/mark_failed`:
`{webhook_id, status: "failed", attempts}`), so the handler knows the delivery.

The alert is a synthetic `delivery.failed` event sent through the notification path
(routing rules, Slack/email/SMS, the outbox when nothing is configured), keyed
`alert:<webhook-id>` in the delivery ledger: a second failure of the same delivery, or
a second call for the same job, sends nothing more. A forged request (rejected by the
preprocessor) never pages anyone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from f.dodo.lib.routing import Routing, Rule

ALERT_TYPE = "delivery.failed"
JOB_ALERT_TYPE = "job.failed"
# Used when the routing variable has no rule of its own for the alert types.
ALERT_RULE = {"channels": ["slack", "email"], "urgency": "urgent", "title": "Dodo bundle: $event_type",
              "summary": "$reason"}


def with_alert_rules(routing: Routing) -> Routing:
    """The routing, plus the built-in alert rule for an alert type no rule matches."""
    extra = [Rule(match=t, **ALERT_RULE) for t in (ALERT_TYPE, JOB_ALERT_TYPE) if routing.route(t) is None]
    return replace(routing, rules=[*extra, *routing.rules]) if extra else routing


def replay_hint(webhook_id: str) -> str:
    return (f'Fix the cause, then run f/dodo/replay with webhook_ids ["{webhook_id}"] '
            f"(locally: python -m local_runner replay --webhook-id {webhook_id})")


def failed_row(conn, webhook_id: str) -> dict | None:
    """The inbox row of a delivery (conn: search_path = the bundle's schema)."""
    row = conn.execute("SELECT event_type, status, attempts, failed_step, last_error, occurred_at "
                       "FROM webhook_events WHERE webhook_id = %s", [webhook_id]).fetchone()
    if row is None:
        return None
    keys = ("event_type", "status", "attempts", "failed_step", "last_error", "occurred_at")
    return dict(zip(keys, row))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def delivery_alert(webhook_id: str, row: dict | None, job_id: str = "") -> dict:
    """The `delivery.failed` event for one delivery (a normalised-event shape notify renders)."""
    row = row or {}
    step, error = row.get("failed_step") or "unknown", row.get("last_error") or "see the flow run"
    return {
        "event_type": ALERT_TYPE, "category": "alert", "webhook_id": f"alert:{webhook_id}",
        "entity_id": webhook_id, "status": f"failed at {step}", "occurred_at": _now(),
        "customer_name": None, "customer_email": None, "customer_id": None,
        "amount": None, "amount_minor": None, "currency": None,
        "data": {"reason": replay_hint(webhook_id),
                 "metadata": {"event": f"{row.get('event_type') or 'delivery'} {webhook_id}",
                              "error": error[:300], **({"job": job_id} if job_id else {})}},
    }


def job_alert(path: str, job_id: str, error: object, schedule_path: str | None) -> dict:
    """A failed job that is not a delivery (a scheduled report or reconcile), once per job."""
    message = error.get("message") if isinstance(error, dict) else error
    where = f"schedule {schedule_path}" if schedule_path else path
    return {
        "event_type": JOB_ALERT_TYPE, "category": "alert", "webhook_id": f"alert:job:{job_id}",
        "entity_id": job_id, "status": "failed", "occurred_at": _now(),
        "customer_name": None, "customer_email": None, "customer_id": None,
        "amount": None, "amount_minor": None, "currency": None,
        "data": {"reason": f"{where}: {str(message or 'failed')[:300]}. Open the job in Windmill, fix the cause "
                           "named there, then run it again.", "metadata": {}},
    }


def alert_for(conn, *, path: str, job_id: str, webhook_id: str | None, status: str | None,
              error: object, schedule_path: str | None) -> dict | None:
    """The alert event for a failed job, or None when nobody should be paged."""
    if status == "rejected":  # the preprocessor refused it: unsigned or forged, not a delivery
        return None
    if webhook_id:
        return delivery_alert(webhook_id, failed_row(conn, webhook_id) if conn else None, job_id)
    return job_alert(path, job_id, error, schedule_path)
