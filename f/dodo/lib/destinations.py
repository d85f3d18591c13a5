"""The per-event destinations beside the CRM: analytics (PostHog, Segment-spec), email
campaigns (Mailchimp, campaigns.py) and calendar (Google Calendar, gcalendar.py), run in
turn inside the CRM step.

Each configured destination is delivered once per delivery through the ledger (its own
row: sink, channel below), so a retried step or a replay sends only what did not go out;
one that fails does not stop the others, and the step fails after trying them all
(`DestinationsFailed`) so Windmill retries it and the inbox row is marked for replay.
An unconfigured destination is skipped without a ledger row, a request or a job.
"""

from __future__ import annotations

import time
from functools import partial
from collections.abc import Callable  # not typing: see resources.py

from f.dodo.lib import crm, ledger, retry
from f.dodo.lib.errors import ConfigError, is_permanent, mark_permanent
from f.dodo.lib.resources import configured

# name (the flow input's key and resource f/dodo/<name>) -> (ledger sink, required fields)
DESTINATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "posthog": ("analytics", ("api_key",)),
    "segment": ("analytics", ("write_key",)),
    "mailchimp": ("campaigns", ("api_key", "list_id")),
    "gcal": ("calendar", ("token",)),
}


class DestinationsFailed(RuntimeError):
    """One or more destinations failed for this delivery (each recorded in the ledger)."""


def _sender(name: str, conn) -> Callable[..., dict]:
    # A destination's module is imported only when it is configured: on Windmill each module
    # a job imports is one HTTP fetch and one compile (docs/internals.md, "What each hot-path
    # step imports"). Mailchimp and Calendar read the customer's state from Postgres.
    if name == "mailchimp":
        from f.dodo.lib import campaigns  # noqa: PLC0415
        return partial(campaigns.send, conn=conn)
    if name == "gcal":
        from f.dodo.lib import gcalendar  # noqa: PLC0415
        return partial(gcalendar.send, conn=conn)
    from f.dodo.lib import analytics  # noqa: PLC0415
    return {"posthog": analytics.send_posthog, "segment": analytics.send_segment}[name]


def check(name: str, resource: dict) -> None:
    """A configured resource that lacks a required field fails with the fix, before any call."""
    missing = [f for f in DESTINATIONS[name][1] if not resource.get(f)]
    if missing:
        raise mark_permanent(ConfigError(f"f/dodo/{name}", f"resource has no {', '.join(missing)}",
                          f"edit the resource f/dodo/{name} and set {', '.join(missing)}"))


def deliver(conn, event: dict, resources: dict | None, *, sleep: retry.Sleep = time.sleep,
            failed: list[Exception] | None = None) -> dict:
    """Deliver `event` to every configured destination once; {name: ledger result}.

    `resources`: {name: resource or None} (the flow's `destinations` input). Raises
    DestinationsFailed after all were tried when any failed or is in progress, naming
    them and the errors the caller already had in `failed` (the CRM's), or re-raises
    the caller's one error when every destination went out. The error is permanent
    (errors.RETRY_IF: no step retry) only when every failure is."""
    key = crm.note_id(event)
    results = {}
    for name, resource in (resources or {}).items():
        if name not in DESTINATIONS or configured(resource) is None:  # absent or empty: not configured
            continue

        def send(name=name, resource=resource) -> dict:
            check(name, resource)
            return _sender(name, conn)(resource, event, key, sleep=sleep)

        results[name] = ledger.deliver_once(conn, key, DESTINATIONS[name][0], name, send)
    bad = {n: r for n, r in results.items() if r["status"] in ("failed", "in_progress")}
    if failed and not bad and len(failed) == 1:
        raise failed[0]
    if failed or bad:
        error = DestinationsFailed("; ".join([str(e) for e in failed or []] + [
            f"{n}: {r.get('error') or r['status']}" for n, r in bad.items()]))
        if all(map(is_permanent, failed or [])) and all(r.get("permanent") for r in bad.values()):
            mark_permanent(error)
        raise error
    return results
