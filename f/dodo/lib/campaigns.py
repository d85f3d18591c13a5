"""The customer in the merchant's Mailchimp audience, in step with their lifecycle.

Mailchimp Marketing API 3.0 (mailchimp.com/developer/marketing/api/list-members):
- PUT  /3.0/lists/{list_id}/members/{subscriber_hash}  add or update (the hash is the
  MD5 of the lower-case email: idempotent by email). `status_if_new` applies only to a
  new member; an existing member's status (e.g. unsubscribed) is never changed.
- POST /3.0/lists/{list_id}/members/{subscriber_hash}/tags  {"tags": [{"name", "status":
  "active"|"inactive"}]}: sets each tag on or off (idempotent).
HTTP Basic auth with any user name and the API key; the data center is the key's suffix
(`...-us21` -> https://us21.api.mailchimp.com).

Tags campaigns target: `dodo-customer` (a live subscription or a paid order),
`dodo-churned` (every subscription ended), `dodo-payment-failing` (not churned, and a
subscription on hold or past due, a dunning not recovered, or the newest payment failed; a dunning
event names only the customer id, so their email comes from Postgres). With
Postgres every tag is the customer's current state (`crm.customer_state` and `_FAILING`:
a late event sends the newest truth), read and written under the contact's lock
(`crm.contact_lock`, as the HubSpot sync), so the last write is from the last read; without
Postgres they come from the event.
"""

from __future__ import annotations

import hashlib
import time

from f.dodo.lib import apicall, crm, retry

TAGS = ("dodo-customer", "dodo-churned", "dodo-payment-failing")
_FAILING_STATUS = {"on_hold", "past_due"}
_FAILING_EVENTS = {"payment.failed", "dunning.started", "subscription.on_hold", "subscription.past_due"}
_RECOVERED_EVENTS = {"payment.succeeded", "dunning.recovered", "subscription.active", "subscription.renewed"}
_FIXES = {401: "set api_key of the resource f/dodo/mailchimp to a Mailchimp API key (Account -> Extras -> "
               "API keys; it ends with -<data center>)",
          403: "the API key's user cannot edit this audience: use an owner's or admin's key",
          404: "set list_id of the resource f/dodo/mailchimp to the audience id (Audience -> Settings -> "
               "Audience name and defaults)"}


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()  # noqa: S324 - Mailchimp's key, not security


def base_url(resource: dict) -> str:
    if resource.get("base_url"):
        return resource["base_url"].rstrip("/")
    return f"https://{resource['api_key'].rsplit('-', 1)[-1]}.api.mailchimp.com"


# Payment failing, from Postgres: a subscription held, a dunning still recovering, or the
# newest payment failed (newer wins: a late, older failure does not set it again).
_FAILING = """
SELECT EXISTS (SELECT 1 FROM subscriptions WHERE customer_id = %(cid)s AND status = ANY(%(held)s))
    OR EXISTS (SELECT 1 FROM dunning WHERE customer_id = %(cid)s AND status = 'recovering')
    OR coalesce((SELECT status = 'failed' FROM payments WHERE customer_id = %(cid)s
                  ORDER BY coalesce(created_at, event_at) DESC, payment_id DESC LIMIT 1), false)"""


def payment_failing(conn, event: dict) -> bool | None:
    """The customer's payment-failing state in Postgres; None when Postgres does not know them."""
    cid = event.get("customer_id") or crm._customer_by_email(conn, event["customer_email"])  # noqa: SLF001
    if cid is None:
        return None
    return bool(conn.execute(_FAILING, {"cid": cid, "held": sorted(_FAILING_STATUS)}).fetchone()[0])


# Events that change a tag but name the customer only by id (dunning): the email from Postgres.
_BY_CUSTOMER_ID = {"dunning"}


def _email(conn, customer_id: str | None) -> str | None:
    row = conn.execute("SELECT email FROM customers WHERE customer_id = %s", (customer_id,)).fetchone()
    return row and row[0]


def tags(state: dict, event: dict) -> list[dict]:
    """Each of TAGS on or off for this customer (`state["payment_failing"]`: from Postgres)."""
    lifecycle = state.get("dodo_lifecycle")
    etype = event.get("event_type") or ""
    failing = state.get("payment_failing")
    if failing is None:  # no database: what the event says
        failing = state.get("dodo_subscription_status") in _FAILING_STATUS or (
            etype in _FAILING_EVENTS and etype not in _RECOVERED_EVENTS)
    on = {"dodo-customer": lifecycle == "customer", "dodo-churned": lifecycle == "churned",
          "dodo-payment-failing": failing and lifecycle != "churned"}  # churned: no recovery campaign
    return [{"name": t, "status": "active" if on[t] else "inactive"} for t in TAGS]


def member_body(resource: dict, event: dict, name: str | None) -> dict:
    first, _, last = (name or event.get("customer_name") or "").strip().partition(" ")
    return {"email_address": event["customer_email"], "status_if_new": resource.get("status_if_new") or "transactional",
            "merge_fields": {"FNAME": first, "LNAME": last}}


def send(resource: dict, event: dict, key: str, *, conn=None, sleep: retry.Sleep = time.sleep) -> dict:
    """Upsert the member and set their tags; the ledger outcome (the subscriber hash)."""
    if not event.get("customer_email") and conn is not None and event.get("category") in _BY_CUSTOMER_ID:
        event = dict(event, customer_email=_email(conn, event.get("customer_id")))
    if not event.get("customer_email"):
        return {"status": "skipped", "external_id": "no customer email"}
    if conn is None:
        return _put_member(resource, event, crm.event_state(event), None, sleep)
    with crm.contact_lock(conn, event["customer_email"]):
        state, name = crm.customer_state(conn, event)
        return _put_member(resource, event, state | {"payment_failing": payment_failing(conn, event)}, name, sleep)


def _put_member(resource: dict, event: dict, state: dict, name: str | None, sleep: retry.Sleep) -> dict:
    member = f"{base_url(resource)}/3.0/lists/{resource['list_id']}/members/{subscriber_hash(event['customer_email'])}"
    auth = ("dodo", resource["api_key"])
    resp = apicall.call("Mailchimp", "PUT", member, json=member_body(resource, event, name), auth=auth,
                        fixes=_FIXES, sleep=sleep, allow=(400,))
    if resp.status_code == 400:
        title = str(resp.json().get("title", ""))
        if "Compliance" in title or "Forgotten" in title:  # the person opted out: never re-added
            return {"status": "skipped", "external_id": f"mailchimp: {title}"}
        raise apicall.ApiError("Mailchimp", 400, f"{title}: {resp.json().get('detail', '')}"[:300])
    apicall.call("Mailchimp", "POST", member + "/tags", json={"tags": tags(state, event)}, auth=auth,
                 fixes=_FIXES, sleep=sleep)
    return {"status": "sent", "external_id": subscriber_hash(event["customer_email"])}
