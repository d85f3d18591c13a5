"""The bundle's Windmill workspace items, and lookups of the optional ones.

One place for the paths every script and flow refers to, and for the references
to the optional integrations that the entry flow's sinks receive. Only references
(`$res:`/`$var:` strings) leave here, never secret values: the worker resolves each
reference when the step that receives it starts. Lookups use f/dodo/lib/windmill_api
(standard library only): the preprocessor imports this module on every delivery.
"""

from f.dodo.lib import windmill_api

POSTGRES = "f/dodo/postgres"
NOTIFY_ROUTING = "f/dodo/notify_routing"
DODO_API = "f/dodo/dodo_api"
WEBHOOK_SECRET = "f/dodo/webhook_secret"
WEBHOOK_SECRET_PREVIOUS = "f/dodo/webhook_secret_previous"
WEBHOOK_TOLERANCE = "f/dodo/webhook_tolerance_s"
DODO_MODE = "f/dodo/dodo_mode"  # test_mode | live_mode, written by f/dodo/setup
SLACK_WEBHOOK_URL = "f/dodo/slack_webhook_url"
CUSTOM_FLOW = "f/dodo/custom"  # the users' extension flow; the entry flow calls it only when it has steps
# flow input -> optional resource; the sinks use the local outbox when one is absent
INTEGRATIONS = {"hubspot": "f/dodo/hubspot", "slack": "f/dodo/slack", "smtp": "f/dodo/smtp",
                "twilio": "f/dodo/twilio"}

# The per-event destinations the CRM step also delivers to (f/dodo/lib/destinations.py):
# one flow input `destinations` {name: $res:...} holding those that exist.
DESTINATIONS = {"posthog": "f/dodo/posthog", "segment": "f/dodo/segment", "mailchimp": "f/dodo/mailchimp",
                "gcal": "f/dodo/gcal"}


def optional_variable(path: str) -> str | None:
    """A variable that may not exist: None when Windmill answers 404, or when it is empty
    (resources.configured)."""
    from f.dodo.lib.resources import configured  # noqa: PLC0415 - not on the preprocessor's path

    return configured(windmill_api.optional_variable(path))


def webhook_secrets() -> list[str]:
    """The current then the previous signing secret; SecretConfigError naming the fix
    when there is no current one (never verify with the previous secret alone)."""
    from f.dodo.lib.signature import NO_SECRET, SecretConfigError  # noqa: PLC0415 - light, stdlib only

    current = windmill_api.optional_variable(WEBHOOK_SECRET)
    if not current:
        raise SecretConfigError("secret", NO_SECRET)
    return [current, windmill_api.optional_variable(WEBHOOK_SECRET_PREVIOUS) or ""]


def webhook_tolerance_s(default: int) -> int:
    """The timestamp tolerance variable in seconds, or `default`."""
    text = (windmill_api.optional_variable(WEBHOOK_TOLERANCE) or "").strip()
    return int(text) if text else default


def set_secret(path: str, value: str) -> None:
    """Create or update a secret variable (Windmill API variables/create | update)."""
    windmill_api.set_secret_variable(path, value)


def optional_resource(path: str) -> dict | None:
    """A resource that may not exist: None when it does not, or when its fields are all
    empty (resources.configured). Scripts look optional integrations up themselves: a
    schedule's or step's static `$res:` of a missing path fails the job before any code
    runs (windmill-worker common.rs transform_json_value)."""
    from f.dodo.lib.resources import configured  # noqa: PLC0415

    return configured(windmill_api.optional_resource(path))


def message_channels(slack: dict | None = None, smtp: dict | None = None,
                     slack_webhook_url: str | None = None) -> tuple[dict, list[str]]:
    """The Slack and email settings a scheduled script was given, else those the workspace
    has ({slack, smtp, slack_webhook_url}), and a line for each channel left unconfigured."""
    from f.dodo.lib.resources import configured  # noqa: PLC0415

    slack = configured(slack) or optional_resource(INTEGRATIONS["slack"])
    smtp = configured(smtp) or optional_resource(INTEGRATIONS["smtp"])
    url = configured(slack_webhook_url) or optional_variable(SLACK_WEBHOOK_URL)
    skipped = []
    if not (slack or {}).get("token") and not url:
        skipped.append(f"slack: neither {INTEGRATIONS['slack']} nor {SLACK_WEBHOOK_URL} is configured")
    if not (smtp or {}).get("host"):
        skipped.append(f"email: {INTEGRATIONS['smtp']} is not configured")
    return {"slack": slack, "smtp": smtp, "slack_webhook_url": url}, skipped


def integration_refs() -> dict:
    """References to the optional integrations that exist; only their existence is
    asked, so no secret value is read here. One that exists but is empty is passed too:
    the step that receives it reads it as not configured (resources.configured)."""
    found = {name: f"$res:{path}" for name, path in INTEGRATIONS.items() if _exists(path)}
    destinations = {name: f"$res:{path}" for name, path in DESTINATIONS.items() if _exists(path)}
    if destinations:
        found["destinations"] = destinations
    if windmill_api.variable_exists(SLACK_WEBHOOK_URL):
        found["slack_webhook_url"] = f"$var:{SLACK_WEBHOOK_URL}"
    if custom_has_steps():
        found["custom"] = True
    return found


def _exists(resource_path: str) -> bool:
    return windmill_api.resource_exists(resource_path)


def custom_has_steps() -> bool:
    """Whether the extension flow f/dodo/custom has steps (Windmill API flows/get). The
    entry flow calls it only then, so the empty flow as shipped costs no job. A lookup
    that fails for another reason than 404 counts as yes: a user's steps are never
    skipped because of it (an empty flow then costs its two jobs)."""
    try:
        flow = windmill_api.get_flow(CUSTOM_FLOW)
    except windmill_api.WindmillApiError as exc:
        return exc.status != 404
    return bool(((flow or {}).get("value") or {}).get("modules"))
