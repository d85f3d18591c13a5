"""The bundle's Windmill workspace items, and lookups of the optional ones.

One place for the paths every script and flow refers to, and for the references
to the optional integrations that the entry flow's sinks receive. Only references
(`$res:`/`$var:` strings) leave here, never secret values: the worker resolves each
reference when the step that receives it starts.
"""

import wmill

POSTGRES = "f/dodo/postgres"
NOTIFY_ROUTING = "f/dodo/notify_routing"
DODO_API = "f/dodo/dodo_api"
WEBHOOK_SECRET = "f/dodo/webhook_secret"
WEBHOOK_SECRET_PREVIOUS = "f/dodo/webhook_secret_previous"
WEBHOOK_TOLERANCE = "f/dodo/webhook_tolerance_s"
DODO_MODE = "f/dodo/dodo_mode"  # test_mode | live_mode, written by f/dodo/setup
SLACK_WEBHOOK_URL = "f/dodo/slack_webhook_url"
# flow input -> optional resource; the sinks use the local outbox when one is absent
INTEGRATIONS = {"hubspot": "f/dodo/hubspot", "slack": "f/dodo/slack", "smtp": "f/dodo/smtp",
                "twilio": "f/dodo/twilio"}

# The per-event destinations the CRM step also delivers to (f/dodo/lib/destinations.py):
# one flow input `destinations` {name: $res:...} holding those that exist.
DESTINATIONS = {"posthog": "f/dodo/posthog", "segment": "f/dodo/segment"}


def optional_variable(path: str) -> str | None:
    """A variable that may not exist: None when Windmill answers 404."""
    try:
        return wmill.get_variable(path)
    except Exception as exc:  # wmill raises a bare Exception carrying the status
        if ": 404" in str(exc):
            return None
        raise


def set_secret(path: str, value: str) -> None:
    """Create or update a secret variable (Windmill API variables/create | update)."""
    wmill.set_variable(path, value, is_secret=True)


def integration_refs() -> dict:
    """References to the optional integrations that exist. interpolated=False keeps a
    resource's own secrets as `$var:` references instead of reading them here."""
    found = {name: f"$res:{path}" for name, path in INTEGRATIONS.items() if _exists(path)}
    destinations = {name: f"$res:{path}" for name, path in DESTINATIONS.items() if _exists(path)}
    if destinations:
        found["destinations"] = destinations
    if optional_variable(SLACK_WEBHOOK_URL):
        found["slack_webhook_url"] = f"$var:{SLACK_WEBHOOK_URL}"
    return found


def _exists(resource_path: str) -> bool:
    return wmill.get_resource(resource_path, none_if_undefined=True, interpolated=False) is not None
