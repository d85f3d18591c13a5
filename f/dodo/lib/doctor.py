"""Configuration checks for the bundle: what is missing or wrong, never a secret's value.

Each check returns a `Check` row (name, status ok|warn|fail|skip, detail). Required:
the webhook secret and Postgres (reachable and migrated). Optional integrations are
checked only when configured; a malformed one fails, an absent one is `skip`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable

from f.dodo.lib import routing
from f.dodo.lib import schema as migrations
from f.dodo.lib import workspace as ws
from f.dodo.lib.reconcile import client_from_resource

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass
class Check:
    name: str
    status: str
    detail: str

    def row(self) -> dict:
        return asdict(self)


def check_secret(name: str, value: str | None, required: bool) -> Check:
    """`whsec_` + base64 of at least 24 bytes (Dodo's secrets decode to 24 or 32)."""
    if not value:
        return Check(name, FAIL if required else SKIP, "not set" + ("" if required else " (optional)"))
    value = value.strip()
    if not value.startswith("whsec_"):
        return Check(name, FAIL, "does not start with whsec_: copy it from the Dodo dashboard (Webhooks -> endpoint -> Signing secret)")
    body = value[len("whsec_"):]
    try:
        if not _B64.fullmatch(body):
            raise binascii.Error
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return Check(name, FAIL, "the part after whsec_ is not valid base64")
    if len(key) < 24:
        return Check(name, WARN, f"the key is only {len(key)} bytes; Dodo's are 24 or more")
    return Check(name, OK, f"well-formed ({len(key)}-byte key)")


def check_fields(name: str, value: Any, required_keys: tuple[str, ...], any_of: tuple[str, ...] = ()) -> Check:
    """An optional resource: absent is skip; present must hold its keys (values not shown)."""
    if value is None:
        return Check(name, SKIP, "not configured (optional)")
    if not isinstance(value, dict):
        return Check(name, FAIL, "is not an object resource")
    missing = [k for k in required_keys if not value.get(k)]
    if any_of and not any(value.get(k) for k in any_of):
        missing.append(" or ".join(any_of))
    if missing:
        return Check(name, FAIL, "missing " + ", ".join(missing))
    return Check(name, OK, "configured: " + ", ".join(k for k in sorted(value) if value.get(k)))


def run_check(name: str, probe: Callable[[], str]) -> Check:
    """Run a live probe; its exception becomes the failure detail (type and message)."""
    try:
        return Check(name, OK, probe())
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check(name, FAIL, f"{type(exc).__name__}: {str(exc)[:300]}")


def summary(checks: list[Check]) -> dict:
    """A rich Windmill result: a markdown verdict and the table of checks."""
    failed = [c.name for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    if failed:
        verdict = f"**{len(failed)} problem(s)**: " + ", ".join(failed)
    else:
        verdict = "**All required configuration is in place.**" + (f" Warnings: {', '.join(warned)}" if warned else "")
    # One key only: Windmill renders a rich result when the dict has a single key.
    return {"render_all": [{"markdown": verdict}, {"table-row-object": [c.row() for c in checks]}]}


# --- the bundle's configuration, by its conventional Windmill paths ----------------------

SECRET, PREVIOUS_SECRET, TOLERANCE = ws.WEBHOOK_SECRET, ws.WEBHOOK_SECRET_PREVIOUS, ws.WEBHOOK_TOLERANCE
ROUTING, SLACK_WEBHOOK, POSTGRES, DODO_API = ws.NOTIFY_ROUTING, ws.SLACK_WEBHOOK_URL, ws.POSTGRES, ws.DODO_API
OPTIONAL_RESOURCES = {  # path -> (required keys, any-of keys)
    ws.INTEGRATIONS["slack"]: (("token",), ()),
    ws.INTEGRATIONS["smtp"]: (("host",), ()),
    ws.INTEGRATIONS["twilio"]: (("accountSid", "token"), ("from_number", "messaging_service_sid")),
    ws.INTEGRATIONS["hubspot"]: (("token",), ()),
}

Getter = Callable[[str], Any]  # path -> value, or None when absent or unreadable


def check_postgres(resource: Any, connect: Callable[[Any], Any], schema: str) -> Check:
    """Reachable, and every migration of f/dodo/lib/schema.py applied to `schema`."""
    if not isinstance(resource, dict) or not resource.get("host"):
        return Check(POSTGRES, FAIL, "postgresql resource not set: create it (host, port, user, password, dbname)")

    def probe() -> str:
        with connect(resource) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            done = set(migrations.applied(conn, schema))
        missing = [name for v, name, _ in migrations.migrations() if v not in done]
        if missing:
            raise RuntimeError(f"reachable (PostgreSQL {version}) but schema {schema!r} lacks "
                               f"{', '.join(missing)}: run f/dodo/migrate")
        return f"PostgreSQL {version}, schema {schema!r} migrated ({len(done)} migrations)"

    return run_check(POSTGRES, probe)


def check_routing(text: Any) -> Check:
    if text is None or (isinstance(text, str) and not text.strip()):
        return Check(ROUTING, SKIP, "not set: the built-in routing rules apply")
    return run_check(ROUTING, lambda: f"valid, {len(routing.load(text).rules)} rule(s)")


def check_dodo_api(resource: Any, probe: bool) -> Check:
    base = check_fields(DODO_API, resource, ("api_key", "environment"))
    if base.status != OK:
        return base if base.status == SKIP else Check(DODO_API, FAIL, base.detail + " (needed by f/dodo/reconcile)")
    if resource.get("environment") not in ("test_mode", "live_mode"):
        return Check(DODO_API, FAIL, "environment must be test_mode or live_mode")
    if not probe:
        return base

    def call() -> str:
        with client_from_resource(resource, max_retries=0, timeout=15) as client:
            client.payments.list(page_size=1)
        return f"API key accepted ({resource['environment']})"

    return run_check(DODO_API, call)


def check_all(get_variable: Getter, get_resource: Getter, connect: Callable[[Any], Any],
              schema: str = "dodo", probe: bool = True) -> list[Check]:
    checks = [check_secret(SECRET, get_variable(SECRET), required=True),
              check_secret(PREVIOUS_SECRET, get_variable(PREVIOUS_SECRET), required=False)]
    tolerance = get_variable(TOLERANCE)
    if tolerance is not None:
        ok = str(tolerance).strip().isdigit() and 0 < int(str(tolerance).strip()) <= 3600
        checks.append(Check(TOLERANCE, OK if ok else FAIL, f"{tolerance} s" if ok else "must be whole seconds, 1..3600"))
    checks.append(check_postgres(get_resource(POSTGRES), connect, schema) if probe
                  else check_fields(POSTGRES, get_resource(POSTGRES), ("host", "dbname")))
    checks.append(check_routing(get_variable(ROUTING)))
    checks.append(check_dodo_api(get_resource(DODO_API), probe))
    for path, (keys, any_of) in OPTIONAL_RESOURCES.items():
        checks.append(check_fields(path, get_resource(path), keys, any_of))
    hook = get_variable(SLACK_WEBHOOK)
    if hook is not None:
        good = str(hook).startswith("https://hooks.slack.com/")
        checks.append(Check(SLACK_WEBHOOK, OK if good else WARN,
                            "set" if good else "set, but not an https://hooks.slack.com/ URL"))
    return checks
