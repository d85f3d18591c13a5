"""One-run set-up: the Dodo webhook endpoint for this workspace, its signing secret, the schema.

The endpoint is found again on every run, so a second run updates it instead of adding
another: first by its metadata (`windmill_workspace` + `windmill_flow`, which setup
writes), else by its URL. Creating it passes an idempotency key, so a retried job that
already created it does not create a second one.

Test mode and live mode: Dodo keeps them apart (test.dodopayments.com and
live.dodopayments.com, each with its own endpoints and secrets, selected by the
`dodo_payments` resource's `environment`). One workspace serves one mode: the mode is
written to the endpoint's metadata and to the workspace variable `f/dodo/dodo_mode`, and
setup refuses to switch a workspace from one mode to the other (the other mode's secret
would be overwritten and every one of its deliveries rejected). Run the other mode in a
second workspace with its own `f/dodo/postgres` (or schema), so test data never mixes
with live data.
"""

from __future__ import annotations

import contextlib
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

import dodopayments
from dodopayments.types.webhook_event_type import WebhookEventType

from f.dodo.lib import workspace as ws
from f.dodo.lib.errors import ConfigError

ENTRY_FLOW = "f/dodo/webhook"
ROUTE = "dodo/webhook"  # f/dodo/webhook.http_trigger.yaml route_path
MODES = ("test_mode", "live_mode")
EVENT_TYPES = typing.get_args(WebhookEventType)
DESCRIPTION = "Windmill bundle f/dodo/webhook"
# Windmill Cloud mounts every HTTP route under its workspace (windmill-worker.md §2,
# backend/windmill-trigger-http/src/lib.rs): /api/r/{workspace}/{route}.
CLOUD_HOSTS = ("app.windmill.dev", "eu.windmill.dev")
PAGE_LIMIT = 100  # endpoints a page
MAX_ENDPOINT_PAGES = 50  # 5,000 endpoints: far more than one account holds; past it the pager is stuck


class SetupError(ValueError):
    """A setting setup cannot work with; the message says which and what to do."""


@contextlib.contextmanager
def dodo_api_errors(resource: dict, setting: str = "the dodo_payments resource") -> Iterator[None]:
    """The Dodo API's connection and key errors as one-line ConfigErrors naming the fix."""
    where = resource.get("base_url") or resource.get("environment") or "live_mode"
    try:
        yield
    except dodopayments.APIConnectionError:
        raise ConfigError(setting, f"the Dodo API ({where}) is unreachable",
                          "check its environment (test_mode or live_mode) and that Windmill's workers reach "
                          "the internet") from None
    except (dodopayments.AuthenticationError, dodopayments.PermissionDeniedError) as exc:
        raise ConfigError(setting, f"the Dodo API ({where}) refused the API key (HTTP {exc.status_code})",
                          "create an API key in that mode's Dodo dashboard (Developer -> API keys) and put it "
                          "in the resource") from None


@dataclass
class Endpoint:
    id: str
    action: str  # created | updated | unchanged
    url: str
    filter_types: list[str]
    duplicates: list[str]  # other endpoints that point at this workspace's flow


def endpoint_url(base_url: str, workspace: str, workspaced_route: bool | None = None) -> str:
    """The entry flow's HTTP route (no token needed: the preprocessor checks the signature)."""
    if not base_url:
        raise SetupError("WM_BASE_URL is not set: pass webhook_url (https://<windmill>/api/r/dodo/webhook)")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SetupError(f"base URL {base_url!r} is not an http(s) URL: pass webhook_url instead")
    if workspaced_route is None:
        workspaced_route = parts.hostname in CLOUD_HOSTS
    prefix = f"{workspace}/" if workspaced_route else ""
    return f"{base_url.rstrip('/')}/api/r/{prefix}{ROUTE}"


def check_mode(environment: Any) -> str:
    if environment not in MODES:
        raise SetupError(f"the dodo_payments resource's environment is {environment!r}: set it to test_mode or "
                         "live_mode (the Dodo dashboard the API key comes from)")
    return environment


def check_event_types(event_types: Iterable[str] | None) -> list[str]:
    """Known Dodo event types, sorted; empty means every type (Dodo's default)."""
    chosen = sorted(set(event_types or ()))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise SetupError(f"unknown event types {unknown}: choose from the Dodo event types "
                         "(e.g. payment.succeeded, subscription.*) or leave the list empty for all")
    return chosen


def expand(patterns: Iterable[str] | None) -> list[str]:
    """`dispute.*` -> every dispute type; plain names pass through (checked later)."""
    out: list[str] = []
    for p in patterns or ():
        if p.endswith(".*"):
            out += [t for t in EVENT_TYPES if t.startswith(p[:-1])]
        else:
            out.append(p)
    return out


def metadata(workspace: str, mode: str) -> dict[str, str]:
    return {"windmill_workspace": workspace, "windmill_flow": ENTRY_FLOW, "mode": mode}


def _ours(hook, workspace: str, url: str) -> bool:
    meta = hook.metadata or {}
    if meta.get("windmill_workspace") == workspace and meta.get("windmill_flow") == ENTRY_FLOW:
        return True
    return hook.url.split("?", 1)[0] == url.split("?", 1)[0]


def find_endpoints(client, workspace: str, url: str) -> list:
    """This workspace's endpoints in the client's Dodo environment. The SDK's cursor pager
    follows `iterator` for as long as the API says `done: false`: bounded here, and a cursor
    seen before (an API that repeats itself) is an error, not a loop."""
    found, cursors = [], set()
    page = client.webhooks.list(limit=PAGE_LIMIT)
    for number in range(1, MAX_ENDPOINT_PAGES + 1):
        found += [h for h in page.data if _ours(h, workspace, url)]
        if not page.has_next_page():
            break
        if number == MAX_ENDPOINT_PAGES or page.iterator in cursors:
            raise _endless("the same cursor twice" if page.iterator in cursors else f"over {number} pages")
        cursors.add(page.iterator)
        page = page.get_next_page()
    return found


def _endless(why: str) -> SetupError:
    return SetupError(f"the Dodo API's list of webhook endpoints did not end ({why}): delete unused endpoints "
                      "in the Dodo dashboard (Webhooks) and run setup again")


def ensure_endpoint(client, url: str, workspace: str, mode: str, filter_types: list[str]) -> Endpoint:
    """Create the endpoint, or bring the existing one to `url` and `filter_types`."""
    mine = find_endpoints(client, workspace, url)
    meta = metadata(workspace, mode)
    if not mine:
        made = client.webhooks.create(url=url, filter_types=filter_types, description=DESCRIPTION, metadata=meta,
                                      idempotency_key=f"windmill:{workspace}:{ENTRY_FLOW}:{mode}")
        return Endpoint(made.id, "created", made.url, list(made.filter_types or []), [])
    hook, rest = mine[0], [h.id for h in mine[1:]]
    wanted = {"url": url, "filter_types": filter_types, "metadata": {**(hook.metadata or {}), **meta},
              "disabled": False}
    current = {"url": hook.url, "filter_types": sorted(hook.filter_types or []), "metadata": hook.metadata or {},
               "disabled": bool(hook.disabled)}
    changed = {k: v for k, v in wanted.items() if current[k] != v}
    if not changed:
        return Endpoint(hook.id, "unchanged", hook.url, current["filter_types"], rest)
    hook = client.webhooks.update(hook.id, **changed)
    return Endpoint(hook.id, "updated", hook.url, sorted(hook.filter_types or []), rest)


def store_secret(secret: str, get_variable: Callable[[str], str | None],
                 set_secret: Callable[[str, str], None]) -> str:
    """Write Dodo's secret to f/dodo/webhook_secret; on a change keep the old one as
    f/dodo/webhook_secret_previous (the preprocessor accepts both: deliveries signed
    before the change still verify). Returns created | rotated | unchanged."""
    if not secret or not secret.startswith("whsec_"):
        raise SetupError("Dodo returned no whsec_ signing secret for the endpoint: check the API key's permissions")
    current = get_variable(ws.WEBHOOK_SECRET)
    if current == secret:
        return "unchanged"
    if current:
        set_secret(ws.WEBHOOK_SECRET_PREVIOUS, current)
    set_secret(ws.WEBHOOK_SECRET, secret)
    return "rotated" if current else "created"


def check_workspace_mode(previous: str | None, mode: str, switch_mode: bool) -> None:
    if previous and previous != mode and not switch_mode:
        raise SetupError(f"this workspace is set up for {previous} and the resource is {mode}: use a second "
                         f"workspace for {mode} (its own f/dodo/postgres), or pass switch_mode=true to move "
                         "this one (the old endpoint then stops verifying)")


def report(endpoint: Endpoint, mode: str, secret_change: str, schema: str, applied: list[str],
           doctor_result: dict) -> dict:
    """What setup did (never the secret), followed by the doctor's report."""
    rows = [
        {"step": "Dodo endpoint", "outcome": endpoint.action,
         "detail": f"{endpoint.id} ({mode}) -> {endpoint.url}; events: "
                   + (", ".join(endpoint.filter_types) if endpoint.filter_types else "all")},
        {"step": "signing secret", "outcome": secret_change,
         "detail": "stored in f/dodo/webhook_secret" + (" (old one kept as f/dodo/webhook_secret_previous)"
                                                       if secret_change == "rotated" else "")},
        {"step": "migrations", "outcome": "applied" if applied else "up to date",
         "detail": f"schema {schema!r}" + (f": {', '.join(applied)}" if applied else "")},
    ]
    if endpoint.duplicates:
        rows.append({"step": "other endpoints", "outcome": "left alone",
                     "detail": f"{', '.join(endpoint.duplicates)} also point at this workspace: delete them in the "
                               "Dodo dashboard, or each delivery arrives twice (the inbox drops the copy)"})
    head = f"**Set up for {mode}**: endpoint {endpoint.action}, secret {secret_change}."
    return {"render_all": [{"markdown": head}, {"table-row-object": rows}, *doctor_result["render_all"]]}
