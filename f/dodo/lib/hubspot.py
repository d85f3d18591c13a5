"""HubSpot CRM v3 over httpx: contact upsert by email, idempotent timeline notes, setup.

Endpoints (developers.hubspot.com, CRM v3 objects/properties, v4 associations):
- POST /crm/v3/objects/contacts/batch/upsert   {"inputs": [{"idProperty": "email", "id", "properties"}]}
- POST /crm/v3/objects/notes/batch/upsert      idProperty `dodo_event_id`, a unique-value note
  property: a replayed event updates the same note instead of creating a second one
  (HubSpot warns that search-before-create can duplicate, its index lags).
- PUT  /crm/v4/objects/notes/{id}/associations/default/contacts/{id}   (idempotent)
- POST /crm/v3/properties/{objectType}/groups and /crm/v3/properties/{objectType} (409 = exists)
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from f.dodo.lib import retry

API = "https://api.hubapi.com"
GROUP = "dodo_payments"


class HubSpotError(RuntimeError):
    """HubSpot refused a request (4xx other than 429) or stayed down; carries its message."""

    def __init__(self, status: int, message: str, category: str | None = None):
        self.status, self.category = status, category
        super().__init__(f"HubSpot {status}{' ' + category if category else ''}: {message}")


_http: httpx.Client | None = None


def _client() -> httpx.Client:
    # One pooled client per process, shared by every token and base URL (the token goes in
    # each request's headers): building one loads the CA bundle, ~23 ms of CPU.
    global _http
    if _http is None:
        _http = httpx.Client()
    return _http


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

    def call(self, method: str, path: str, body: Any = None) -> dict:
        """One API call with retries; a 4xx other than 429 raises with HubSpot's message."""
        try:
            resp = retry.request(_client(), method, self._base + path, json=body, headers=self._headers,
                                 timeout=self._timeout, service="HubSpot", attempts=self._attempts,
                                 sleep=self._sleep)
        except retry.Unavailable as exc:
            raise HubSpotError(503, str(exc)) from None
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

    def associate_default(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self.call("PUT", f"/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}")


# --- Custom properties the sync writes (created by f/dodo/crm/hubspot_setup) ---------

_TEXT = {"type": "string", "fieldType": "text"}
_NUMBER = {"type": "number", "fieldType": "number"}
_BOOL = {"type": "bool", "fieldType": "booleancheckbox", "options": [
    {"label": "Yes", "value": "true", "displayOrder": 0},
    {"label": "No", "value": "false", "displayOrder": 1}]}
_LIFECYCLE = {"type": "enumeration", "fieldType": "select", "options": [
    {"label": "Customer", "value": "customer", "displayOrder": 0},
    {"label": "Churned", "value": "churned", "displayOrder": 1}]}

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
NOTE_PROPERTIES = {"dodo_event_id": ("Dodo event ID", {**_TEXT, "hasUniqueValue": True})}


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
