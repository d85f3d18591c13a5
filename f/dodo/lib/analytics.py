"""Revenue and lifecycle events to PostHog and to any Segment-spec endpoint.

PostHog capture API (posthog.com/docs/api/capture): POST {host}/i/v0/e/ with
`{api_key, event, distinct_id, properties, timestamp, uuid}`. PostHog deduplicates
events with the same `uuid` (and event, distinct id and timestamp), so the uuid is
derived from the delivery id: a replay or a retried step lands on the same event.

Segment HTTP Tracking API (segment.com/docs/connections/sources/catalog/libraries/server/http-api):
POST {base}/v1/identify and /v1/track, HTTP Basic auth with the write key as the user
name and an empty password, `messageId` the delivery id (Segment deduplicates on it;
RudderStack and Jitsu take the same API). identify carries the customer's email and
name as traits; track the event.

The customer is the distinct id / userId: their Dodo customer id, else their email.
Money is exact: `revenue` (payments: positive; refunds: negative) and `amount` are
decimal strings in major units with `currency`, never floats. Event names are Dodo's
event types (`payment.succeeded`, `subscription.cancelled`, ...).
"""

from __future__ import annotations

import time
import uuid

from f.dodo.lib import apicall, crm, retry
from f.dodo.lib.money import EXPONENTS, format_major

POSTHOG_HOST = "https://us.i.posthog.com"
SEGMENT_API = "https://api.segment.io"
# A fixed namespace: uuid5(namespace, delivery id) is the same on every attempt.
_NAMESPACE = uuid.UUID("5d0d0e1c-6b1f-4c53-9a7e-2f0a7c1d0d0d")
_REVENUE = {"payment.succeeded": "", "refund.succeeded": "-"}
_POSTHOG_FIXES = {401: "set the api_key of the resource f/dodo/posthog to the project API key "
                       "(phc_..., Project settings), not a personal API key",
                  400: "PostHog refused the event's shape; report it with the delivery id"}
_SEGMENT_FIXES = {401: "set write_key of the resource f/dodo/segment to the source's write key",
                  403: "set write_key of the resource f/dodo/segment to the source's write key",
                  400: "the endpoint refused the event's shape; report it with the delivery id"}


def distinct_id(event: dict) -> str | None:
    """Who the event is about: the Dodo customer id, else the email; None for neither."""
    return event.get("customer_id") or event.get("customer_email") or None


def event_uuid(key: str) -> str:
    """The deterministic event uuid of a delivery (PostHog deduplicates on it)."""
    return str(uuid.uuid5(_NAMESPACE, key))


def properties(event: dict) -> dict[str, str]:
    """The event's properties: ids, status and exact money (decimal strings)."""
    props = {"dodo_event_type": event.get("event_type"), "dodo_entity_id": event.get("entity_id")}
    for key in ("status", "product_id", "subscription_id", "payment_id", "refund_id", "dispute_id"):
        if event.get(key):
            props[key] = event[key]
    currency = event.get("currency")
    if event.get("amount_minor") is not None and currency in EXPONENTS:
        amount = format_major(event["amount_minor"], currency)
        props |= {"amount": amount, "currency": currency}
        sign = _REVENUE.get(event.get("event_type"))
        if sign is not None:
            props["revenue"] = sign + amount if amount != "0" else amount
    if event.get("category") == "subscription" and (mrr := crm.mrr(event.get("data") or {})) is not None:
        props |= {"mrr": mrr, "currency": str((event.get("data") or {}).get("currency")).upper()}
    return {k: v for k, v in props.items() if v is not None}


def traits(event: dict) -> dict[str, str]:
    out = {"email": event.get("customer_email"), "name": event.get("customer_name")}
    return {k: v for k, v in out.items() if v}


def posthog_body(api_key: str, event: dict, key: str) -> dict:
    props = properties(event)
    if traits(event):
        props["$set"] = traits(event)  # the person's email and name
    return {"api_key": api_key, "event": event["event_type"], "distinct_id": distinct_id(event),
            "properties": props, "timestamp": event["occurred_at"], "uuid": event_uuid(key)}


def send_posthog(resource: dict, event: dict, key: str, *, sleep: retry.Sleep = time.sleep) -> dict:
    """Capture the event in PostHog; the ledger outcome (the event uuid as external id)."""
    if not distinct_id(event):
        return {"status": "skipped", "external_id": "no customer"}
    host = (resource.get("host") or POSTHOG_HOST).rstrip("/")
    body = posthog_body(resource["api_key"], event, key)
    apicall.call("PostHog", "POST", f"{host}/i/v0/e/", json=body, fixes=_POSTHOG_FIXES, sleep=sleep)
    return {"status": "sent", "external_id": body["uuid"]}


def segment_calls(event: dict, key: str) -> list[tuple[str, dict]]:
    """(path, body) of the identify and track calls for one delivery."""
    user, when = distinct_id(event), event["occurred_at"]
    calls = []
    if traits(event):
        calls.append(("/v1/identify", {"userId": user, "traits": traits(event), "timestamp": when,
                                       "messageId": f"{key}:identify"}))
    calls.append(("/v1/track", {"userId": user, "event": event["event_type"], "properties": properties(event),
                                "timestamp": when, "messageId": key}))
    return calls


def send_segment(resource: dict, event: dict, key: str, *, sleep: retry.Sleep = time.sleep) -> dict:
    """identify, then track, to a Segment-spec endpoint; the ledger outcome."""
    if not distinct_id(event):
        return {"status": "skipped", "external_id": "no customer"}
    base = (resource.get("base_url") or SEGMENT_API).rstrip("/")
    for path, body in segment_calls(event, key):
        apicall.call("Segment", "POST", base + path, json=body, auth=(resource["write_key"], ""),
                     fixes=_SEGMENT_FIXES, sleep=sleep)
    return {"status": "sent", "external_id": key}
