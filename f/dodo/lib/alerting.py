"""Failure alerts: a delivery that failed after its retries reaches a person, once.

Two ways in, one alert:

- A failed delivery: the entry flow's own error handler, its failure module
  (`f/dodo/mark_failed`), records the failure and calls `alert_delivery` once its
  retries are spent. Windmill does not call the workspace error handler for a flow that
  has a failure module (windmill-labs/windmill backend/windmill-queue/src/jobs.rs,
  `add_completed_job`: only a root job, a script or a flow without `failure_module`,
  and never the error handler's own job; an Enterprise feature, whose dispatch moved to
  the private `jobs_ee::apply_completed_job_error_handlers` at @7f41b1ef), so the
  delivery's alert cannot wait for it.
- Any other failed job (a scheduled report, reconcile, export): `f/dodo/alert_failure`
  is the workspace error handler (Workspace settings -> Error handler -> custom script).
  Windmill calls it with the failed job's result merged into its arguments
  (jobs.rs@7f41b1ef `push_error_handler` + `sanitize_result`: `workspace_id, job_id,
  path, is_flow, started_at, email`, `schedule_path` for a scheduled job, then the
  result's keys, a non-object result as `error`). Given a failure module's result
  (`{webhook_id, status: "failed", attempts}`) it alerts for that delivery, under the
  same ledger key.

The alert is a synthetic `delivery.failed` event sent through the notification path
(routing rules, Slack/email/SMS, the outbox when nothing is configured), keyed
`alert:<webhook-id>` in the delivery ledger: a second failure of the same delivery, or
a second call for the same job, sends nothing more. A forged request (rejected by the
preprocessor) never pages anyone: the flow then ends with the preprocessor's own error
(its failure module skipped, `extra.rejected`), or with mark_failed's `status: "rejected"`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from f.dodo.lib.routing import Routing, Rule

if TYPE_CHECKING:
    from f.dodo.lib.notify import Transports

ALERT_TYPE = "delivery.failed"
JOB_ALERT_TYPE = "job.failed"
# Used when the routing variable has no rule of its own for the alert types.
ALERT_RULE = {"channels": ["slack", "email"], "urgency": "urgent", "title": "Dodo bundle: $event_type",
              "summary": "$reason"}


def with_alert_rules(routing: Routing) -> Routing:
    """The routing, plus the built-in alert rule for an alert type no rule matches."""
    extra = [Rule(match=t, **ALERT_RULE) for t in (ALERT_TYPE, JOB_ALERT_TYPE) if routing.route(t) is None]
    return routing._replace(rules=[*extra, *routing.rules]) if extra else routing


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
    if status == "rejected" or _rejected(error):  # the preprocessor refused it: unsigned or forged, not a delivery
        return None
    if webhook_id:
        return delivery_alert(webhook_id, failed_row(conn, webhook_id) if conn else None, job_id)
    return job_alert(path, job_id, error, schedule_path)


def workspace_notifications() -> tuple[Routing, "Transports"]:
    """The routing and notification transports the workspace configures (optional
    integrations looked up, never a static `$res:` that fails when absent)."""
    import os  # noqa: PLC0415 - the alert path only

    from f.dodo.lib import channels, notify  # noqa: PLC0415
    from f.dodo.lib import routing as rules  # noqa: PLC0415
    from f.dodo.lib import workspace as ws  # noqa: PLC0415

    found = {name: ws.optional_resource(ws.INTEGRATIONS[name]) for name in ("slack", "smtp", "twilio")}
    transports = notify.Transports(**found, slack_webhook_url=ws.optional_variable(ws.SLACK_WEBHOOK_URL),
                                   slack_api=os.environ.get("DODO_SLACK_API_URL", channels.SLACK_API),
                                   twilio_api=os.environ.get("DODO_TWILIO_API_URL", channels.TWILIO_API))
    return rules.load(ws.optional_variable(ws.NOTIFY_ROUTING)), transports


def send(conn, event: dict) -> dict:
    """Send an alert event through the routing (plus the built-in alert rule), once per
    its ledger key; raises as `notify` does when a channel failed."""
    from f.dodo.lib.notify import notify  # noqa: PLC0415

    routing, transports = workspace_notifications()
    return notify(conn, event, with_alert_rules(routing), transports)


def alert_delivery(conn, webhook_id: str, job_id: str = "") -> dict:
    """The failure module's alert for a delivery it just marked failed. Never raises: the
    failure is recorded either way, and an alert that could not go out is reported in the
    result and the job log (its ledger row says which channel failed)."""
    try:
        return send(conn, delivery_alert(webhook_id, failed_row(conn, webhook_id), job_id))
    except Exception as exc:  # noqa: BLE001 - reported, the inbox row is the record
        print(f"WARNING alert for failed delivery {webhook_id} not sent: {type(exc).__name__}: {str(exc)[:300]}")
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _rejected(error: object) -> bool:
    """The preprocessor's own rejection (SignatureError.rejected in the error's `extra`),
    which the entry flow ends with when it skips its failure module."""
    extra = error.get("extra") if isinstance(error, dict) else None
    return isinstance(extra, dict) and extra.get("rejected") is True
