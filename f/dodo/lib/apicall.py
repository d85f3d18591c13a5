"""JSON calls to the per-event destinations (PostHog, Segment, Mailchimp, Google Calendar).

Each of these APIs is idempotent on a key the bundle chooses (PostHog's `uuid`, Segment's
`messageId`, Mailchimp's member hash, Calendar's event id), so a request is resent
freely: 429 honours Retry-After and 5xx/connection errors back off (retry.py). Any
other 4xx is permanent for this delivery: `ApiError` at once, naming the provider's
message and the fix; the ledger records it 'failed' and a replay sends it once fixed.
"""

from __future__ import annotations

import time
from typing import Any

from f.dodo.lib import http_client as http
from f.dodo.lib import retry

class ApiError(RuntimeError):
    """A destination refused the request (4xx other than 429: permanent, errors.RETRY_IF)
    or stayed down (503: the step's retry may help)."""

    def __init__(self, service: str, status: int, message: str, fix: str = ""):
        self.service, self.status = service, status
        if status < 500:
            self.permanent = True
        super().__init__(f"{service} {status}: {message}" + (f"; {fix}" if fix else ""))


def call(service: str, method: str, url: str, *, fixes: dict[int, str] | None = None,
         sleep: retry.Sleep = time.sleep, attempts: int = 5, **kwargs) -> http.Response:
    """One call with retries; returns a 2xx response or the one `allow`ed by the caller
    (kwargs `allow`: statuses handed back as they are, e.g. 404/409); raises ApiError
    otherwise, with the fix for its status from `fixes`."""
    allow = set(kwargs.pop("allow", ()))
    try:
        resp = retry.request(http.shared(15.0), method, url, service=service, attempts=attempts, sleep=sleep, **kwargs)
    except retry.Unavailable as exc:
        raise ApiError(service, 503, str(exc), "the step's retry or a replay sends it again") from None
    if resp.is_success or resp.status_code in allow:
        return resp
    raise ApiError(service, resp.status_code, _message(resp), (fixes or {}).get(resp.status_code, ""))


def _message(resp: http.Response) -> str:
    """The provider's own words, bounded (never the request: it may carry a key)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    if isinstance(body, dict):
        for key in ("detail", "message", "title", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if value:
                return str(value)[:300]
    return str(body)[:300]
