"""HTTP with bounded retries: 429 honours Retry-After, 5xx and connection errors back off.

Shared by the HubSpot, Slack and Twilio clients. `sleep` is injectable so tests run the
whole retry window without waiting. Error texts never include URLs: a Slack incoming
webhook URL is a secret.
"""

from __future__ import annotations

import email.utils
import time
from typing import Callable

import httpx

Sleep = Callable[[float], None]


class Unavailable(RuntimeError):
    """The service stayed unreachable or failing for the whole retry window."""


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    service: str,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    sleep: Sleep = time.sleep,
    **kwargs,
) -> httpx.Response:
    """Send, retrying 429/5xx/connection errors; return the last response (any status).

    Raises Unavailable only when no response arrived at all on the last attempt.
    """
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            resp = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            if last:
                raise Unavailable(f"{service}: {type(exc).__name__} after {attempts} attempts") from None
            sleep(min(max_delay, base_delay * 2**attempt))
            continue
        if resp.status_code != 429 and resp.status_code < 500 or last:
            return resp
        wait = retry_after(resp) if resp.status_code == 429 else None
        sleep(min(max_delay, wait if wait is not None else base_delay * 2**attempt))
    raise AssertionError("unreachable")
