"""HubSpot CRM v3 over f/dodo/lib/http_client: contact upsert by email, idempotent timeline notes, setup.

Endpoints (developers.hubspot.com, CRM v3 objects/properties/search, v4 associations;
shapes as in HubSpot/hubspot-api-python's generated models):
- POST /crm/v3/objects/contacts/batch/upsert   {"inputs": [{"idProperty": "email", "id", "properties"}]}
- POST /crm/v3/objects/notes   {"properties", "associations": [{"to": {"id"}, "types": [
  {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]}: the note and
  its association to the contact in one call (202 = note to contact).
- POST /crm/v3/objects/notes/search   by the plain note property `dodo_event_id`.
  HubSpot documents unique-value properties (and so upsert by idProperty) for contacts,
  companies, deals, tickets and custom objects, not for notes: a note is made
  idempotent by the delivery ledger instead. Its first attempt creates the note; an
  attempt after an earlier one whose outcome is unknown searches first (`sync_event`'s
  `search_first`). HubSpot's search index lags writes by a few seconds, so a retry
  sooner than that can still add a second note: Windmill's step retries come later.
- PUT  /crm/v4/objects/notes/{id}/associations/default/contacts/{id}   (idempotent)
- POST /crm/v3/properties/{objectType}/groups and /crm/v3/properties/{objectType} (409 = exists);
  enumeration options carry `hidden`, required in the spec's OptionInput.

Rate limits: HubSpot sends no Retry-After. A 429 body carries `policyName`
(`TEN_SECONDLY_ROLLING`: the 10-second rolling window; `DAILY`: the daily quota, reset at
midnight in the account's time zone) and responses carry `X-HubSpot-RateLimit-Max`,
`-Remaining`, `-Interval-Milliseconds` (and `-Daily`, `-Daily-Remaining`). The window is
waited out whole (HubSpot/hubspot-api-nodejs src/services/decorators/RetryDecorator.ts
@7d8794d0 waits 10 s per attempt on TEN_SECONDLY_ROLLING); a daily 429 fails at once.
"""

from __future__ import annotations

import time

from f.dodo.lib import http_client as http
from f.dodo.lib import retry
from f.dodo.lib.errors import OutcomeUnknown, mark_permanent

API = "https://api.hubapi.com"
GROUP = "dodo_payments"
NOTE_TO_CONTACT = 202  # HUBSPOT_DEFINED association type: note -> contact
WINDOW_S = 10.0  # TEN_SECONDLY_ROLLING, when the response names no interval
SECONDLY_S = 1.0  # other policies (the search API's per-second limit)


# What to fix when HubSpot refuses a request (a 4xx other than 429 is never retried).
_FIX = {401: "check the private-app token in the resource f/dodo/hubspot",
        403: "give the private app the CRM scopes the README lists (f/dodo/hubspot)"}
_FIX_DEFAULT = "fix what HubSpot names (run f/dodo/crm/hubspot_setup if a property is missing), then replay"


class HubSpotError(RuntimeError):
    """HubSpot refused a request (4xx other than 429) or stayed down; carries its message.
    A refusal is permanent (f/dodo/lib/errors.py RETRY_IF): the step fails at once, the fix
    in the message; an outage (5xx, 429 after its retries, no answer) is retried."""

    def __init__(self, status: int, message: str, category: str | None = None):
        self.status, self.category = status, category
        text = f"HubSpot {status}{' ' + category if category else ''}: {message}"
        if 400 <= status < 500 and status != 429:
            text += f" ({_FIX.get(status, _FIX_DEFAULT)})"
            self.permanent = True
        super().__init__(text)


class HubSpot:
    """A token and a base URL over the process's shared connection pool: cheap to build,
    and no TLS work until the first call."""

    def __init__(self, token: str, base_url: str = API, *, sleep: retry.Sleep = time.sleep,
                 attempts: int = 5, timeout: float = 15.0):
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._sleep, self._attempts, self._timeout = sleep, attempts, timeout

    def close(self) -> None:
        """Nothing to release: the pool is the process's and outlives each client."""

    def call(self, method: str, path: str, body: object = None, *, resend: bool = True) -> dict:
        """One API call with retries; a 4xx other than 429 raises with HubSpot's message.

        `resend=False` (a create, which HubSpot does not dedupe): no retry once the request
        may have been applied; the caller's next attempt finds out (search) instead."""
        try:
            resp = retry.request(http.shared(), method, self._base + path, json=body, headers=self._headers,
                                 timeout=self._timeout, service="HubSpot", attempts=self._attempts,
                                 sleep=self._sleep, wait_429=rate_limit_wait, resend=resend)
        except retry.Unavailable as exc:
            raise HubSpotError(503, str(exc)) from None
        except OutcomeUnknown as exc:
            raise HubSpotError(504, f"{exc}; the next attempt searches for it before creating") from None
        if resp.is_success:
            return resp.json() if resp.content else {}
        try:
            err = resp.json()
        except ValueError:
            err = {"message": resp.text[:500]}
        raise HubSpotError(resp.status_code, str(err.get("message", "")), err.get("category"))

    def upsert(self, object_type: str, id_property: str, id_value: str, properties: dict) -> dict:
        """Create or update one record by a unique property; returns HubSpot's record."""
        body = {"inputs": [{"idProperty": id_property, "id": id_value, "properties": properties}]}
        result = self.call("POST", f"/crm/v3/objects/{object_type}/batch/upsert", body)
        if result.get("errors") or not result.get("results"):
            errors = result.get("errors") or [{"message": "empty result"}]
            raise HubSpotError(207, "; ".join(str(e.get("message")) for e in errors))
        return result["results"][0]

    def create_note(self, properties: dict, contact_id: str) -> str:
        """Create a note associated with the contact in the same call; returns its id."""
        body = {"properties": properties, "associations": [{"to": {"id": contact_id}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}]}]}
        return str(self.call("POST", "/crm/v3/objects/notes", body, resend=False)["id"])

    def find_note(self, event_id: str) -> str | None:
        """The id of a note whose `dodo_event_id` is `event_id`, or None."""
        body = {"filterGroups": [{"filters": [{"propertyName": "dodo_event_id", "operator": "EQ",
                                               "value": event_id}]}],
                "properties": ["dodo_event_id"], "limit": 1}
        results = self.call("POST", "/crm/v3/objects/notes/search", body).get("results") or []
        return str(results[0]["id"]) if results else None

    def associate_default(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self.call("PUT", f"/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}")


def rate_limit_wait(resp: http.Response, attempt: int) -> float:
    """Seconds to wait after HubSpot's 429, by its `policyName`; DAILY raises at once."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    policy = str(body.get("policyName") or "") if isinstance(body, dict) else ""
    if policy == "DAILY":
        remaining = resp.headers.get("X-HubSpot-RateLimit-Daily-Remaining", "0")
        raise mark_permanent(HubSpotError(  # no retry within minutes can help (errors.RETRY_IF)
            429, f"the account's daily API limit is used up ({remaining} calls left; HubSpot resets it "
                 "at midnight in the account's time zone). The delivery stays failed in the ledger: "
                 "replay it (f/dodo/replay) after the reset", "RATE_LIMIT"))
    interval = resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    try:
        return float(interval) / 1000 if interval else (WINDOW_S if policy == "TEN_SECONDLY_ROLLING"
                                                        else SECONDLY_S)
    except ValueError:
        return WINDOW_S


# --- Custom properties the sync writes (created by f/dodo/crm/hubspot_setup) ---------

_TEXT = {"type": "string", "fieldType": "text"}
_NUMBER = {"type": "number", "fieldType": "number"}
_BOOL = {"type": "bool", "fieldType": "booleancheckbox", "options": [
    {"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
    {"label": "No", "value": "false", "displayOrder": 1, "hidden": False}]}
_LIFECYCLE = {"type": "enumeration", "fieldType": "select", "options": [
    {"label": "Customer", "value": "customer", "displayOrder": 0, "hidden": False},
    {"label": "Churned", "value": "churned", "displayOrder": 1, "hidden": False}]}

CONTACT_PROPERTIES = {
    "dodo_customer_id": ("Dodo customer ID", _TEXT),
    "dodo_lifecycle": ("Dodo lifecycle", _LIFECYCLE),
    "dodo_subscription_status": ("Dodo subscription status", _TEXT),
    "dodo_product_id": ("Dodo product", _TEXT),
    "dodo_mrr": ("Dodo MRR", _NUMBER),
    "dodo_lifetime_value": ("Dodo lifetime value", _NUMBER),
    "dodo_currency": ("Dodo currency", _TEXT),
    "dodo_last_payment_date": ("Dodo last payment date", {"type": "datetime", "fieldType": "date"}),
    "dodo_last_payment_amount": ("Dodo last payment amount", _NUMBER),
    "dodo_open_dispute": ("Dodo open dispute", _BOOL),
}
# A plain property: notes do not support hasUniqueValue (see the module docstring).
NOTE_PROPERTIES = {"dodo_event_id": ("Dodo event ID", _TEXT)}


def setup(client: HubSpot) -> dict:
    """Create the property group and properties on contacts and notes; existing ones are kept."""
    created, existing = [], []
    for object_type, props in (("contacts", CONTACT_PROPERTIES), ("notes", NOTE_PROPERTIES)):
        group = {"name": GROUP, "label": "Dodo Payments", "displayOrder": -1}
        if _create(client, f"/crm/v3/properties/{object_type}/groups", group):
            created.append(f"{object_type} group {GROUP}")
        for name, (label, spec) in props.items():
            body = {"name": name, "label": label, "groupName": GROUP, **spec}
            target = created if _create(client, f"/crm/v3/properties/{object_type}", body) else existing
            target.append(f"{object_type}.{name}")
    return {"created": created, "existing": existing}


def _create(client: HubSpot, path: str, body: dict) -> bool:
    """POST a definition; False when HubSpot answers 409 (it already exists)."""
    try:
        client.call("POST", path, body)
    except HubSpotError as exc:
        if exc.status != 409:
            raise
        return False
    return True
