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
calls `preprocessor(event)`; its result `{event, webhook_id}` becomes the flow inputs.
"""

import wmill

from f.dodo.lib.signature import DEFAULT_TOLERANCE_S, verify_trigger_event

SECRET = "f/dodo/webhook_secret"
PREVIOUS_SECRET = "f/dodo/webhook_secret_previous"
TOLERANCE = "f/dodo/webhook_tolerance_s"


def _optional_variable(path: str) -> str | None:
    """A variable that may not exist: None when Windmill answers 404."""
    try:
        return wmill.get_variable(path)
    except Exception as exc:  # wmill raises a bare Exception carrying the status
        if ": 404" in str(exc):
            return None
        raise


def preprocessor(event: dict):
    secrets = [wmill.get_variable(SECRET), _optional_variable(PREVIOUS_SECRET) or ""]
    tolerance = (_optional_variable(TOLERANCE) or "").strip()
    return verify_trigger_event(event, secrets, int(tolerance) if tolerance else DEFAULT_TOLERANCE_S)
