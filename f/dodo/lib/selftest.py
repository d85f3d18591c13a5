"""The dashboard's "test with a sample payload", done from Windmill.

`send_test_event` signs a sample `payment.succeeded` (amount 0, marked in its metadata,
so revenue figures do not move) with the configured webhook secret, posts it to the
deployed webhook URL exactly as Dodo would, then polls the inbox until the delivery is
recorded or the wait runs out.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from f.dodo.lib.probe import ID_PREFIX, MARKER

HEADERS = "webhook-id,webhook-timestamp,webhook-signature"


def sample_event(test_id: str, now: datetime) -> dict:
    """A payment.succeeded envelope for a zero-amount test payment."""
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "business_id": "bus_selftest",
        "type": "payment.succeeded",
        "timestamp": stamp,
        "data": {
            "payment_id": f"pay_selftest_{test_id}", "business_id": "bus_selftest", "brand_id": "bra_selftest",
            "created_at": stamp, "status": "succeeded", "total_amount": 0, "tax": 0, "currency": "USD",
            "settlement_amount": 0, "settlement_currency": "USD", "payment_method": "card",
            "customer": {"customer_id": "cus_selftest", "email": "selftest@example.com", "name": "Self Test"},
            "billing": {"country": "US"}, "product_cart": [], "metadata": dict(MARKER),
            "retry_attempt": 0, "payment_provider": "dodo", "refunds": [], "disputes": [],
        },
    }


def sign(body: str, secret: str, msg_id: str, now: datetime) -> dict:
    """The Standard Webhooks headers Dodo would send for `body`."""
    signature = Webhook(secret).sign(msg_id, now.astimezone(timezone.utc), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def webhook_url_with_params(url: str) -> str:
    """Add `raw=true` and `include_header=...` to a Windmill /jobs/run webhook URL that lacks
    them: the preprocessor verifies the raw body and needs the three headers."""
    parts = urlsplit(url)
    if "/jobs/run" not in parts.path:
        return url  # an HTTP route: raw body and headers come from the route's settings
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("raw", "true")
    query.setdefault("include_header", HEADERS)
    return urlunsplit(parts._replace(query=urlencode(query, safe=",")))


def post_delivery(url: str, body: str, headers: dict, token: str | None = None, timeout: float = 15.0) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    if token:
        sent["authorization"] = f"Bearer {token}"
    with httpx.Client(timeout=timeout) as client:
        return client.post(webhook_url_with_params(url), content=body.encode(), headers=sent)


def inbox_row(conn, webhook_id: str) -> dict | None:
    """The inbox row of a delivery (conn: search_path = the bundle's schema), or None."""
    row = conn.execute("SELECT status, attempts, last_error FROM webhook_events WHERE webhook_id = %s",
                       [webhook_id]).fetchone()
    return None if row is None else {"status": row[0], "attempts": row[1], "last_error": row[2]}


def wait_for(check: Callable[[], dict | None], wait_s: float, interval_s: float = 1.0,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict | None:
    """Call `check` until it returns a row or `wait_s` has passed; the last answer."""
    deadline = clock() + wait_s
    while True:
        row = check()
        if row is not None or clock() >= deadline:
            return row
        sleep(interval_s)


def _finished(row: dict | None) -> dict | None:
    return row if row is not None and row.get("status") != "received" else None


def endpoint_from_dodo(client, workspace: str, url: str) -> tuple[str, str]:
    """(URL, signing secret) of this workspace's endpoint as Dodo holds them: the self-test
    then posts where Dodo posts and signs as Dodo signs, so a stored secret that differs
    from Dodo's fails it, as it fails every real delivery."""
    from f.dodo.lib import setup  # noqa: PLC0415 - only with the dodo resource

    mine = setup.find_endpoints(client, workspace, url)
    if not mine:
        raise setup.SetupError(f"no Dodo endpoint points at workspace {workspace!r}: run f/dodo/setup")
    return mine[0].url, client.webhooks.retrieve_secret(mine[0].id).secret


def explain(result: dict, signed_with_dodo: bool, stored_matches: bool | None) -> dict:
    """What the outcome means and what to do, in one line."""
    if signed_with_dodo and stored_matches is False:
        result["ok"] = False
        result["fix"] = "f/dodo/webhook_secret differs from Dodo's secret for the endpoint: run f/dodo/setup"
    elif not result["ok"] and not result["accepted"]:
        result["fix"] = "the webhook URL refused the delivery (see response): check the URL and its token"
    elif not result["ok"]:
        result["fix"] = ("it never reached the inbox as processed: open the f/dodo/webhook runs in Windmill "
                         "(a failed preprocessor means the secret does not match: run f/dodo/setup)")
    result["signed_with"] = ("the endpoint's secret fetched from Dodo" if signed_with_dodo else
                             "f/dodo/webhook_secret (pass the dodo resource to also catch a secret that differs "
                             "from Dodo's)")
    return result


def send_test_event(
    url: str,
    secret: str,
    lookup: Callable[[str], dict | None],
    token: str | None = None,
    wait_s: float = 30.0,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Sign, post and poll; the outcome, never the secret or the token."""
    now = now or datetime.now(timezone.utc)
    test_id = uuid.uuid4().hex[:12]
    msg_id = f"{ID_PREFIX}{test_id}"
    body = json.dumps(sample_event(test_id, now), separators=(",", ":"))
    resp = post_delivery(url, body, sign(body, secret, msg_id, now), token)
    accepted = 200 <= resp.status_code < 300
    if accepted:  # wait until the flow has finished with it (processed, ignored or failed)
        wait_for(lambda: _finished(lookup(msg_id)), wait_s, sleep=sleep)
    row = lookup(msg_id) if accepted else None
    status = (row or {}).get("status")
    return {
        "webhook_id": msg_id,
        "http_status": resp.status_code,
        "accepted": accepted,
        "arrived": row is not None,
        "inbox_status": status,
        "last_error": (row or {}).get("last_error"),
        "ok": status == "processed",
        "response": resp.text[:300] if not accepted else None,
    }
