"""Renewals, trial ends and dispute deadlines as Google Calendar events (Windmill's
`gcal` resource: {token}, an OAuth access token with the calendar scope).

Google Calendar API v3 (developers.google.com/calendar/api/v3/reference/events):
- PUT    /calendar/v3/calendars/{calendarId}/events/{eventId}  update (404: not there yet)
- POST   /calendar/v3/calendars/{calendarId}/events            insert with our own `id`
  (409: it exists, e.g. inserted meanwhile or deleted before: then PUT again)
- DELETE /calendar/v3/calendars/{calendarId}/events/{eventId}  (404/410: already gone)
Event ids are client-chosen: base32hex characters (a-v, 0-9), 5-1024 long; ours is
derived from the object (`renewal:<subscription>`, `trial:<subscription>`,
`dispute:<dispute>`), so a replay or a later event updates, moves or removes the same
event instead of adding one. All-day events on the date (UTC).

Newer wins: with Postgres the subscription's or dispute's current row (the record step
keeps the newest event per object) decides, not the event being delivered. A dispute's
deadline is created_at + DISPUTE_DAYS (Dodo sends no deadline field; see below). Customer text in
the summary and description is plain text (the API does not run it; HTML is escaped
because Google renders descriptions as HTML).
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from datetime import date, datetime, timedelta

from f.dodo.lib import apicall, retry

API = "https://www.googleapis.com"
LIVE = {"active", "on_hold", "past_due", "paused", "pending"}
DISPUTE_OPEN = {"dispute_opened", "dispute_challenged"}  # dispute_status values
_STATUS_OF = {"dispute.opened": "dispute_opened", "dispute.challenged": "dispute_challenged"}
# Dodo's dispute object has no deadline field (SDK dodopayments 1.123.0 types/dispute.py and
# get_dispute.py; dodopayments-python@9ee69f8; the API reference's dispute webhook payload), and
# Dodo's dispute guide says "You have 4 days to respond to a dispute after creation"
# (docs.dodopayments.com/features/transactions/disputes): the deadline is created_at + 4 days.
DISPUTE_DAYS = 4
_FIXES = {401: "the gcal resource's token is invalid or expired: reconnect the resource f/dodo/gcal "
               "(OAuth, scope https://www.googleapis.com/auth/calendar.events)",
          403: "the token may not write this calendar: share it with the account or fix calendar_id",
          404: "set calendar_id of the resource f/dodo/gcal to a calendar the account can write"}


def event_id(kind: str, object_id: str) -> str:
    """A base32hex id (a-v0-9), 32 characters, the same for the same object."""
    digest = hashlib.sha256(f"{kind}:{object_id}".encode()).digest()[:20]
    return base64.b32hexencode(digest).decode().lower()


def _day(value) -> date | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.date()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def subscription_row(conn, event: dict) -> dict:
    """The subscription as Postgres has it now (newest event), else as the event says."""
    data = event.get("data") or {}
    row = {"status": data.get("status"), "next_billing_date": data.get("next_billing_date"),
           "trial_period_days": data.get("trial_period_days"), "created_at": data.get("created_at"),
           "product_id": data.get("product_id")}
    if conn is not None:
        found = conn.execute("SELECT status, next_billing_date, trial_period_days, created_at, product_id "
                             "FROM subscriptions WHERE subscription_id = %s", (event["subscription_id"],)).fetchone()
        if found:
            row = dict(zip(row, found))
    return row


def wanted(conn, event: dict) -> dict[str, dict | None]:
    """{event id: calendar event, or None to remove it} for this Dodo event."""
    who = html.escape(event.get("customer_name") or event.get("customer_email") or "a customer")
    if event.get("category") == "subscription" and event.get("subscription_id"):
        sub_id = event["subscription_id"]
        sub = subscription_row(conn, event)
        live = str(sub["status"] or "").lower() in LIVE
        product = html.escape(str(sub.get("product_id") or ""))
        out = {event_id("renewal", sub_id): _all_day(f"Renewal: {who} ({product})", _day(sub["next_billing_date"]),
                                                     f"Subscription {sub_id} renews.") if live else None}
        trial_end = None
        if sub.get("trial_period_days") and _day(sub.get("created_at")):
            trial_end = _day(sub["created_at"]) + timedelta(days=int(sub["trial_period_days"]))
        out[event_id("trial", sub_id)] = _all_day(f"Trial ends: {who} ({product})", trial_end,
                                                  f"Subscription {sub_id} trial ends.") if live else None
        return out
    if event.get("category") == "dispute" and event.get("dispute_id"):
        status, created = dispute_row(conn, event)
        opened = _day(created or event.get("occurred_at"))
        body = (_all_day(f"Dispute response due: {who}", opened + timedelta(days=DISPUTE_DAYS),
                         f"Dispute {event['dispute_id']} on payment {event.get('payment_id')}: respond in Dodo.")
                if status in DISPUTE_OPEN else None)
        return {event_id("dispute", event["dispute_id"]): body}
    return {}


def dispute_row(conn, event: dict) -> tuple[str | None, object]:
    """(dispute_status, created_at) as Postgres has it now (newest event: a late
    dispute.opened after dispute.won does not bring the deadline back), else as the event says."""
    data = event.get("data") or {}
    if conn is not None:
        found = conn.execute("SELECT status, created_at FROM disputes WHERE dispute_id = %s",
                             (event["dispute_id"],)).fetchone()
        if found:
            return found[0], found[1]
    return data.get("dispute_status") or _STATUS_OF.get(event.get("event_type")), data.get("created_at")


def _all_day(summary: str, day: date | None, description: str) -> dict | None:
    if day is None:
        return None
    return {"summary": summary, "description": description, "status": "confirmed",
            "start": {"date": day.isoformat()}, "end": {"date": (day + timedelta(days=1)).isoformat()},
            "transparency": "transparent"}


def send(resource: dict, event: dict, key: str, *, conn=None, sleep: retry.Sleep = time.sleep) -> dict:
    """Put, move or remove this event's calendar events; the ledger outcome. With Postgres,
    read and written under the customer's lock (`crm.contact_lock`): the last write is from
    the last read, so a slow older send cannot overwrite a newer date."""
    if conn is not None and event.get("customer_email"):
        from f.dodo.lib import crm  # noqa: PLC0415 - the crm step has it loaded already

        with crm.contact_lock(conn, event["customer_email"]):
            return _send(resource, event, conn, sleep)
    return _send(resource, event, conn, sleep)


def _send(resource: dict, event: dict, conn, sleep) -> dict:
    changes = wanted(conn, event)
    if not changes:
        return {"status": "skipped", "external_id": "no calendar event for this type"}
    base = f"{(resource.get('base_url') or API).rstrip('/')}/calendar/v3/calendars/{resource.get('calendar_id') or 'primary'}/events"
    headers = {"Authorization": f"Bearer {resource['token']}"}
    done = {}
    for eid, body in changes.items():
        done[eid] = _put(base, eid, body, headers, sleep) if body else _delete(base, eid, headers, sleep)
    return {"status": "sent", "external_id": ",".join(f"{k}:{v}" for k, v in done.items())}


def _put(base: str, eid: str, body: dict, headers: dict, sleep) -> str:
    kw = {"headers": headers, "fixes": _FIXES, "sleep": sleep}
    resp = apicall.call("Google Calendar", "PUT", f"{base}/{eid}", json=body, allow=(404,), **kw)
    if resp.status_code == 404:
        resp = apicall.call("Google Calendar", "POST", base, json=body | {"id": eid}, allow=(409,), **kw)
        if resp.status_code == 409:  # inserted meanwhile, or deleted earlier (a deleted id stays taken)
            apicall.call("Google Calendar", "PUT", f"{base}/{eid}", json=body, **kw)
    return "put"


def _delete(base: str, eid: str, headers: dict, sleep) -> str:
    resp = apicall.call("Google Calendar", "DELETE", f"{base}/{eid}", headers=headers, fixes=_FIXES,
                        sleep=sleep, allow=(404, 410))
    return "deleted" if resp.is_success else "absent"
