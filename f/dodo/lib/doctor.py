"""Configuration checks for the bundle: what is missing or wrong, never a secret's value.

Each check returns a `Check` row (name, status ok|warn|fail|skip, detail, fix: one
sentence saying what to do). Required: the webhook secret and Postgres (reachable,
migrated, and the role can read and write every table). Optional integrations are
checked only when configured; with `probe` each is called live (Slack auth.test, an SMTP
login, the Twilio account, the HubSpot properties, the Dodo endpoint's signing secret)
so a check fails for what would actually break a delivery.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import httpx

from f.dodo.lib import channels, hubspot, routing, smtp_wire
from f.dodo.lib import schema as migrations
from f.dodo.lib import workspace as ws
from f.dodo.lib.reconcile import client_from_resource
from f.dodo.lib.resources import configured

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def row(self) -> dict:
        return asdict(self)


def check_secret(name: str, value: str | None, required: bool) -> Check:
    """`whsec_` + base64 of at least 24 bytes (Dodo's secrets decode to 24 or 32)."""
    fix = f"run f/dodo/setup: it stores the endpoint's signing secret in {name}"
    if not value:
        return Check(name, FAIL if required else SKIP, "not set" + ("" if required else " (optional)"),
                     fix if required else "")
    value = value.strip()
    if not value.startswith("whsec_"):
        return Check(name, FAIL, "does not start with whsec_: copy it from the Dodo dashboard (Webhooks -> endpoint -> "
                                 "Signing secret)", fix)
    body = value[len("whsec_"):]
    try:
        if not _B64.fullmatch(body):
            raise binascii.Error
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return Check(name, FAIL, "the part after whsec_ is not valid base64", fix)
    if len(key) < 24:
        return Check(name, WARN, f"the key is only {len(key)} bytes; Dodo's are 24 or more", fix)
    return Check(name, OK, f"well-formed ({len(key)}-byte key)")


def check_fields(name: str, value: Any, required_keys: tuple[str, ...], any_of: tuple[str, ...] = ()) -> Check:
    """An optional resource: absent or empty is skip; present must hold its keys (values not shown)."""
    if configured(value) is None:
        return Check(name, SKIP, "not configured (optional)" if value is None else
                     "empty: counts as not configured (optional)")
    if not isinstance(value, dict):
        return Check(name, FAIL, "is not an object resource", f"recreate {name} with the resource type's fields")
    missing = [k for k in required_keys if not value.get(k)]
    if any_of and not any(value.get(k) for k in any_of):
        missing.append(" or ".join(any_of))
    if missing:
        return Check(name, FAIL, "missing " + ", ".join(missing), f"fill in {', '.join(missing)} in the resource {name}")
    return Check(name, OK, "configured: " + ", ".join(k for k in sorted(value) if value.get(k)))


class Broken(Exception):
    """A live probe's finding: `detail` (what is wrong) and `fix` (one sentence)."""

    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.detail, self.fix = detail, fix


def run_check(name: str, probe: Callable[[], str], fix: str = "") -> Check:
    """Run a live probe; `Broken` carries its own fix, any other exception becomes the
    failure detail (type and message) with `fix`."""
    try:
        return Check(name, OK, probe())
    except Broken as exc:
        return Check(name, FAIL, exc.detail, exc.fix)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check(name, FAIL, f"{type(exc).__name__}: {str(exc)[:300]}", fix)


def summary(checks: list[Check]) -> dict:
    """A rich Windmill result: a markdown verdict (each failure with its fix) and the table."""
    failed = [c for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    if failed:
        verdict = f"**{len(failed)} problem(s)**:\n\n" + "\n".join(f"- `{c.name}`: {c.detail} → {c.fix}"
                                                                   for c in failed)
    else:
        verdict = "**All required configuration is in place.**" + (f" Warnings: {', '.join(warned)}" if warned else "")
    # One key only: Windmill renders a rich result when the dict has a single key.
    return {"render_all": [{"markdown": verdict}, {"table-row-object": [c.row() for c in checks]}]}


# --- the bundle's configuration, by its conventional Windmill paths ----------------------

SECRET, PREVIOUS_SECRET, TOLERANCE = ws.WEBHOOK_SECRET, ws.WEBHOOK_SECRET_PREVIOUS, ws.WEBHOOK_TOLERANCE
ROUTING, SLACK_WEBHOOK, POSTGRES, DODO_API = ws.NOTIFY_ROUTING, ws.SLACK_WEBHOOK_URL, ws.POSTGRES, ws.DODO_API
ENDPOINT = "dodo endpoint secret"
SLACK, SMTP, TWILIO, HUBSPOT = (ws.INTEGRATIONS[k] for k in ("slack", "smtp", "twilio", "hubspot"))
OPTIONAL_RESOURCES = {  # path -> (required keys, any-of keys)
    SLACK: (("token",), ()),
    SMTP: (("host",), ()),
    TWILIO: (("accountSid", "token"), ("from_number", "messaging_service_sid")),
    HUBSPOT: (("token",), ()),
}

Getter = Callable[[str], Any]  # path -> value, or None when absent or unreadable


@dataclass
class Live:
    """Where the live probes go (the providers' APIs; tests point them at stand-ins)."""
    workspace: str = ""
    webhook_url: str = ""  # the endpoint URL setup registered (matched when metadata is absent)
    # the same overrides f/dodo/notify/send honours (DODO_SLACK_API_URL, DODO_TWILIO_API_URL)
    slack_api: str = field(default_factory=lambda: os.environ.get("DODO_SLACK_API_URL", channels.SLACK_API))
    twilio_api: str = field(default_factory=lambda: os.environ.get("DODO_TWILIO_API_URL", channels.TWILIO_API))
    hubspot_api: str = hubspot.API
    schedules: list[dict] = field(default_factory=list)  # the workspace's schedules {path, args}
    schedules_error: str = ""  # why they could not be listed
    timeout: float = 15.0


def check_postgres(resource: Any, connect: Callable[[Any], Any], schema: str) -> Check:
    """Reachable, every migration of f/dodo/lib/schema.py applied to `schema`, and the role
    can do what the flows do (read, insert, update every table; run record_event)."""
    if not isinstance(resource, dict) or not resource.get("host"):
        return Check(POSTGRES, FAIL, "postgresql resource not set",
                     "create the postgresql resource f/dodo/postgres (host, port, user, password, dbname)")

    def probe() -> str:
        with connect(resource) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            done = set(migrations.applied(conn, schema))
            missing = [name for v, name, _ in migrations.migrations() if v not in done]
            if missing:
                raise Broken(f"reachable (PostgreSQL {version}) but schema {schema!r} lacks {', '.join(missing)}",
                             f"run f/dodo/migrate (or f/dodo/setup) with a role that may create in schema {schema!r}")
            lacking = migrations.missing_privileges(conn, schema)
            if lacking:
                raise Broken(f"the role {resource.get('user') or ''!r} lacks: {', '.join(lacking[:8])}"
                             + (f" (+{len(lacking) - 8} more)" if len(lacking) > 8 else ""),
                             f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema}, USAGE ON SCHEMA {schema}"
                             f" and EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} to that role")
        return f"PostgreSQL {version}, schema {schema!r} migrated to v{max(done):03d} ({len(done)} migrations), role can write"

    return run_check(POSTGRES, probe, "check host, port, dbname, user and password in f/dodo/postgres "
                                      "and that the server accepts connections from Windmill's workers")


def check_routing(text: Any) -> Check:
    if text is None or (isinstance(text, str) and not text.strip()):
        return Check(ROUTING, SKIP, "not set: the built-in routing rules apply")
    return run_check(ROUTING, lambda: f"valid, {len(routing.load(text).rules)} rule(s)",
                     "fix the field named above in the variable f/dodo/notify_routing (README: Notifications)")


def check_dodo_api(resource: Any, probe: bool) -> Check:
    base = check_fields(DODO_API, resource, ("api_key", "environment"))
    if base.status != OK:
        return base if base.status == SKIP else Check(DODO_API, FAIL, base.detail + " (needed by f/dodo/reconcile)",
                                                      base.fix)
    if resource.get("environment") not in ("test_mode", "live_mode"):
        return Check(DODO_API, FAIL, "environment must be test_mode or live_mode",
                     "set environment to the mode of the dashboard the API key comes from")
    if not probe:
        return base

    def call() -> str:
        with client_from_resource(resource, max_retries=0, timeout=15) as client:
            client.payments.list(page_size=1)
        return f"API key accepted ({resource['environment']})"

    return run_check(DODO_API, call, "create an API key in the Dodo dashboard (Developer -> API keys) "
                                     "and put it in f/dodo/dodo_api")


def check_endpoint_secret(resource: Any, stored: str | None, previous: str | None, live: Live) -> Check:
    """The secret the preprocessor verifies with equals the one Dodo signs with."""
    from f.dodo.lib import setup  # noqa: PLC0415 - only this check needs the endpoint lookup

    fix = "run f/dodo/setup: it stores Dodo's current signing secret for this workspace's endpoint"

    def probe() -> str:
        with client_from_resource(resource, max_retries=0, timeout=live.timeout) as client:
            mine = setup.find_endpoints(client, live.workspace, live.webhook_url)
            if not mine:
                raise Broken(f"no endpoint in Dodo's {resource.get('environment')} points at workspace "
                             f"{live.workspace!r}", "run f/dodo/setup to create it")
            hook = mine[0]
            if hook.disabled:
                raise Broken(f"endpoint {hook.id} is disabled in Dodo", "run f/dodo/setup to enable it")
            dodo = client.webhooks.retrieve_secret(hook.id).secret
        if stored == dodo:
            return f"f/dodo/webhook_secret equals Dodo's for endpoint {hook.id}"
        if previous == dodo:
            raise Broken("only f/dodo/webhook_secret_previous equals Dodo's secret", fix)
        raise Broken(f"f/dodo/webhook_secret differs from Dodo's secret for endpoint {hook.id}: "
                     "every delivery fails verification", fix)

    return run_check(ENDPOINT, probe, "check the API key in f/dodo/dodo_api")


# What the bundle calls with the bot token: chat.postMessage, and the revenue report's chart
# upload (files.getUploadURLExternal / files.completeUploadExternal).
SLACK_SCOPES = ("chat:write", "files:write")


def check_slack(resource: dict, live: Live) -> Check:
    """auth.test, and the token's scopes: Slack lists those granted in every Web API
    response's `x-oauth-scopes` header, comma-separated (slackapi/node-slack-sdk
    packages/web-api/src/WebClient.ts@00a2dddd `buildResult`)."""
    def probe() -> str:
        resp = httpx.post(f"{live.slack_api}/auth.test", headers={"Authorization": f"Bearer {resource['token']}"},
                          timeout=live.timeout)
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or not body.get("ok"):
            raise Broken(f"auth.test: HTTP {resp.status_code} {body.get('error', '')}".strip(),
                         "create a new bot token (chat:write, files:write) and put it in f/dodo/slack")
        granted = resp.headers.get("x-oauth-scopes")
        missing = [s for s in SLACK_SCOPES if granted is not None and s not in re.split(r"\s*,\s*", granted.strip())]
        if missing:
            raise Broken(f"the bot token lacks the scope {', '.join(missing)}"
                         + (" (the revenue report's chart upload is refused)" if "files:write" in missing else ""),
                         f"add {', '.join(missing)} under OAuth & Permissions -> Bot Token Scopes in the Slack app, "
                         "reinstall it and put the new token in f/dodo/slack")
        scopes = "scopes not reported" if granted is None else "has " + ", ".join(SLACK_SCOPES)
        return f"auth.test ok: team {body.get('team')!r}, bot {body.get('user')!r}; {scopes}"

    return run_check(SLACK, probe, "check that Windmill's workers can reach slack.com")


def check_smtp(resource: dict, live: Live) -> Check:
    def probe() -> str:
        host, port = resource["host"], int(resource.get("port") or 587)
        try:
            with channels.smtp_session(resource, timeout=live.timeout):
                pass
        except channels.DeliveryError as exc:  # the server offers no TLS for the login
            raise Broken(str(exc)[:300], "use the server's TLS port (465, or 587 with STARTTLS) in f/dodo/smtp") from None
        except smtp_wire.AuthError as exc:
            raise Broken(f"{host}:{port} refused the login ({exc.code})",
                         "correct user and password in f/dodo/smtp") from None
        except (smtp_wire.SmtpError, OSError) as exc:  # ssl.SSLError is an OSError
            raise Broken(f"{host}:{port}: {type(exc).__name__}: {str(exc)[:200]}",
                         "check host and port in f/dodo/smtp (465 SSL, 587 STARTTLS) and that the server is up") from None
        return f"{host}:{port} " + ("login accepted" if resource.get("user") else "reachable (no login configured)")

    return run_check(SMTP, probe)


def check_twilio(resource: dict, live: Live) -> Check:
    def probe() -> str:
        sid = resource["accountSid"]
        resp = httpx.get(f"{live.twilio_api}/2010-04-01/Accounts/{sid}.json", auth=(sid, resource["token"]),
                         timeout=live.timeout)
        if resp.status_code != 200:
            raise Broken(f"account fetch: HTTP {resp.status_code}",
                         "copy the Account SID and Auth Token from the Twilio console into f/dodo/twilio")
        status = resp.json().get("status")
        if status != "active":
            raise Broken(f"account status {status!r}", "reactivate the Twilio account or use another one")
        return "account active"

    return run_check(TWILIO, probe, "check that Windmill's workers can reach api.twilio.com")


def check_hubspot(resource: dict, live: Live) -> Check:
    def probe() -> str:
        client = hubspot.HubSpot(resource["token"], live.hubspot_api, attempts=2, timeout=live.timeout)
        missing = []
        for object_type, wanted in (("contacts", hubspot.CONTACT_PROPERTIES), ("notes", hubspot.NOTE_PROPERTIES)):
            try:
                found = {p["name"] for p in client.call("GET", f"/crm/v3/properties/{object_type}").get("results", [])}
            except hubspot.HubSpotError as exc:
                if exc.status in (401, 403):
                    raise Broken(f"HubSpot answered {exc.status}: {exc}",
                                 "create a private-app token with the crm.objects.contacts.write and "
                                 "crm.schemas.contacts.write scopes and put it in f/dodo/hubspot") from None
                raise
            missing += [f"{object_type}.{name}" for name in wanted if name not in found]
        if missing:
            raise Broken(f"custom properties missing: {', '.join(missing)}", "run f/dodo/crm/hubspot_setup once")
        return "token accepted, custom properties present"

    return run_check(HUBSPOT, probe, "check that Windmill's workers can reach api.hubapi.com")


LIVE_CHECKS = {SLACK: check_slack, SMTP: check_smtp, TWILIO: check_twilio, HUBSPOT: check_hubspot}


def references(value: Any) -> list[str]:
    """The `$var:`/`$res:` strings in a schedule's arguments, at any depth."""
    out, stack = [], [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str) and v.startswith(("$var:", "$res:")):
            out.append(v)
    return out


def check_schedules(schedules: list[dict], get_variable: Getter, get_resource: Getter) -> list[Check]:
    """Windmill fails a scheduled job whose static `$res:`/`$var:` argument does not exist,
    every time it fires (windmill-worker.md §5): each reference must resolve."""
    checks = []
    for schedule in schedules:
        if not schedule.get("enabled", True):
            continue
        name = f"schedule {schedule['path']}"
        absent = [ref for ref in references(schedule.get("args") or {})
                  if (get_variable if ref.startswith("$var:") else get_resource)(ref[5:]) is None]
        if absent:
            checks.append(Check(name, FAIL, f"{', '.join(absent)} does not exist: every run fails",
                                f"create {', '.join(r[5:] for r in absent)} or remove it from the schedule's arguments"))
        else:
            checks.append(Check(name, OK, "every argument resolves"))
    return checks


def check_all(get_variable: Getter, get_resource: Getter, connect: Callable[[Any], Any],
              schema: str = "dodo", probe: bool = True, live: Live | None = None) -> list[Check]:
    secret, previous = get_variable(SECRET), get_variable(PREVIOUS_SECRET)
    checks = [check_secret(SECRET, secret, required=True),
              check_secret(PREVIOUS_SECRET, previous, required=False)]
    tolerance = get_variable(TOLERANCE)
    if tolerance is not None:
        ok = str(tolerance).strip().isdigit() and 0 < int(str(tolerance).strip()) <= 3600
        checks.append(Check(TOLERANCE, OK if ok else FAIL, f"{tolerance} s" if ok else "must be whole seconds, 1..3600",
                            "" if ok else f"set {TOLERANCE} to whole seconds (default 300)"))
    checks.append(check_postgres(get_resource(POSTGRES), connect, schema) if probe
                  else check_fields(POSTGRES, get_resource(POSTGRES), ("host", "dbname")))
    checks.append(check_routing(get_variable(ROUTING)))
    dodo = get_resource(DODO_API)
    checks.append(check_dodo_api(dodo, probe))
    if live is not None and probe and checks[-1].status == OK:
        checks.append(check_endpoint_secret(dodo, secret, previous, live))
    for path, (keys, any_of) in OPTIONAL_RESOURCES.items():
        value = get_resource(path)
        check = check_fields(path, value, keys, any_of)
        if check.status == OK and probe and live is not None:
            check = LIVE_CHECKS[path](value, live)
        checks.append(check)
    hook = configured(get_variable(SLACK_WEBHOOK))  # empty: not configured, as the sinks read it
    if hook is not None:
        good = str(hook).startswith("https://hooks.slack.com/")
        checks.append(Check(SLACK_WEBHOOK, OK if good else WARN, "set" if good else "set, but not an "
                            "https://hooks.slack.com/ URL", "" if good else "paste the incoming-webhook URL Slack gave"))
    if live is not None:
        checks += check_schedules(live.schedules, get_variable, get_resource)
        if live.schedules_error:
            checks.append(Check("schedules", WARN, f"could not list them: {live.schedules_error}",
                                "give the doctor's job a token that may list schedules (run it as a workspace user)"))
    return checks


# --- inside a Windmill job --------------------------------------------------------------

def _windmill_variable(path: str):
    import wmill  # noqa: PLC0415 - only a Windmill job reads through it

    try:
        return wmill.get_variable(path)
    except Exception:  # noqa: BLE001 - absent or not readable: the check says "not set"
        return None


def _windmill_resource(path: str):
    import wmill  # noqa: PLC0415

    return wmill.get_resource(path, none_if_undefined=True)


def workspace_schedules() -> list[dict]:
    """The workspace's schedules (Windmill API GET /w/{ws}/schedules/list)."""
    import wmill  # noqa: PLC0415

    wmill.get_workspace()  # makes the job's global client (the local runner installs its own)
    client = wmill.client._client
    return [{"path": s["path"], "args": s.get("args") or {}, "enabled": s.get("enabled", True)}
            for s in client.get(f"/w/{client.workspace}/schedules/list").json()]


def run_windmill(schema: str = "dodo", probe: bool = True, dodo: Any = None, webhook_url: str = "",
                 live: Live | None = None) -> dict:
    """The doctor's report from inside a Windmill job (variables and resources through wmill)."""
    from f.dodo.lib import db as pg  # noqa: PLC0415
    from f.dodo.lib import setup  # noqa: PLC0415

    import wmill  # noqa: PLC0415

    workspace = wmill.get_workspace()
    if live is None:
        url = webhook_url
        if not url:
            try:
                url = setup.endpoint_url(os.environ.get("WM_BASE_URL", ""), workspace)
            except setup.SetupError:
                url = ""
        live = Live(workspace=workspace, webhook_url=url)
        if probe:
            try:
                live.schedules = workspace_schedules()
            except Exception as exc:  # noqa: BLE001 - reported as a check
                live.schedules_error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def resource(path: str):
        return dodo if path == DODO_API and dodo is not None else _windmill_resource(path)

    checks = check_all(_windmill_variable, resource,
                       lambda r: pg.connect(r, schema, check=False, connect_timeout=10),
                       schema=schema, probe=probe, live=live)
    return summary(checks)
