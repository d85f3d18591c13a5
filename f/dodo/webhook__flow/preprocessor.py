# requirements:
# anyio==4.16.0
# certifi==2026.10.19.post1
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# standardwebhooks==1.1.0
# typing_extensions==4.16.0
# wmill==1.850.0
"""Flow preprocessor: verify a Dodo delivery and turn it into the flow inputs.

Runs only for triggers (webhook, HTTP route), never for runs from the UI. Windmill
calls `preprocessor(event)`; its result `{event, webhook_id}` becomes the flow inputs,
plus a `$res:`/`$var:` reference for each optional integration that exists in the
workspace (a static `$res:` of a missing resource would fail the step instead of
falling back to the outbox). Only references leave this step, never secret values.
The delivery is defused first (f/dodo/lib/inert.py): Windmill would resolve a customer's
`$var:...` name into that secret in the next step's arguments.
"""

import wmill

from f.dodo.lib.inert import defuse
from f.dodo.lib.signature import DEFAULT_TOLERANCE_S, verify_trigger_event

SECRET = "f/dodo/webhook_secret"
PREVIOUS_SECRET = "f/dodo/webhook_secret_previous"
TOLERANCE = "f/dodo/webhook_tolerance_s"
# flow input -> optional resource; the sinks use the local outbox when one is absent
INTEGRATIONS = {"hubspot": "f/dodo/hubspot", "slack": "f/dodo/slack", "smtp": "f/dodo/smtp",
                "twilio": "f/dodo/twilio"}
SLACK_WEBHOOK_URL = "f/dodo/slack_webhook_url"


def _optional_variable(path: str) -> str | None:
    """A variable that may not exist: None when Windmill answers 404."""
    try:
        return wmill.get_variable(path)
    except Exception as exc:  # wmill raises a bare Exception carrying the status
        if ": 404" in str(exc):
            return None
        raise


def _integrations() -> dict:
    """References to the optional integrations that exist. interpolated=False keeps a
    resource's secrets as their own `$var:` references; the worker resolves each
    reference when the sink step starts."""
    found = {name: f"$res:{path}" for name, path in INTEGRATIONS.items()
             if wmill.get_resource(path, none_if_undefined=True, interpolated=False) is not None}
    if _optional_variable(SLACK_WEBHOOK_URL):
        found["slack_webhook_url"] = f"$var:{SLACK_WEBHOOK_URL}"
    return found


def preprocessor(event: dict):
    secrets = [wmill.get_variable(SECRET), _optional_variable(PREVIOUS_SECRET) or ""]
    tolerance = (_optional_variable(TOLERANCE) or "").strip()
    inputs = defuse(verify_trigger_event(event, secrets, int(tolerance) if tolerance else DEFAULT_TOLERANCE_S))
    return {**inputs, **_integrations()}  # verified first: a forged request costs no lookups
