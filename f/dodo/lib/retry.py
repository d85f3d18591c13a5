"""HTTP with bounded retries: 429 honours Retry-After, 5xx and connection errors back off.

Shared by the HubSpot, Slack and Twilio clients. `sleep` is injectable so tests run the
whole retry window without waiting. Error texts never include URLs: a Slack incoming
webhook URL is a secret.

`resend=False` is for POSTs that take no idempotency key (Slack chat.postMessage and
incoming webhooks, Twilio's Messages API): they are retried only when the request
provably did not reach the provider, i.e. the connection was never made (refused, DNS,
connect timeout, no pooled connection) or the provider answered 429 (a rate-limited
request is not processed). A timeout after sending, a dropped connection or a 5xx
leaves the outcome unknown: `OutcomeUnknown` is raised instead of sending again.
"""

from __future__ import annotations

import time
from collections.abc import Callable  # not typing: see resources.py

from f.dodo.lib import http_client as http
from f.dodo.lib.errors import OutcomeUnknown

Sleep = Callable[[float], None]


class Unavailable(RuntimeError):
    """The service stayed unreachable or failing for the whole retry window."""


def retry_after(resp: http.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # noqa: PLC0415 - an HTTP date is rare: most steps never parse one
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# Errors raised before any byte of the request left this machine.
NOT_SENT = (http.ConnectError, http.ConnectTimeout, http.PoolTimeout, http.UnsupportedProtocol)
# How long to wait after a 429 (seconds), given the response and the attempt number;
# it may raise instead (HubSpot's daily limit: waiting minutes cannot help).
Wait429 = Callable[[http.Response, int], float]


def request(
    client: http.Client,
    method: str,
    url: str,
    *,
    service: str,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    sleep: Sleep = time.sleep,
    resend: bool = True,
    wait_429: Wait429 | None = None,
    **kwargs,
) -> http.Response:
    """Send, retrying 429/5xx/connection errors; return the last response (any status).

    Raises Unavailable only when no response arrived at all on the last attempt. With
    `resend=False` only unsent requests and 429s are retried; a 5xx is returned at once
    and a transport error after sending raises OutcomeUnknown.
    """
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            resp = client.request(method, url, **kwargs)
        except http.TransportError as exc:
            if not resend and not isinstance(exc, NOT_SENT):
                raise OutcomeUnknown(f"{service}: {type(exc).__name__} after the request was sent: "
                                     "it may have been delivered") from None
            if last:
                raise Unavailable(f"{service}: {type(exc).__name__} after {attempts} attempts") from None
            sleep(min(max_delay, base_delay * 2**attempt))
            continue
        if resp.status_code != 429 and (resp.status_code < 500 or not resend) or last:
            return resp
        if resp.status_code == 429 and wait_429 is not None:
            sleep(wait_429(resp, attempt))
            continue
        wait = retry_after(resp) if resp.status_code == 429 else None
        sleep(min(max_delay, wait if wait is not None else base_delay * 2**attempt))
    raise AssertionError("unreachable")
