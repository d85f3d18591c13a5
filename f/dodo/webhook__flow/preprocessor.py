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
calls `preprocessor(event)`; its result `{event, webhook_id, delivery_attempt}` becomes
the flow inputs, plus a `$res:`/`$var:` reference for each optional integration that exists in the
workspace (a static `$res:` of a missing resource would fail the step instead of
falling back to the outbox). Only references leave this step, never secret values.
The delivery is defused first (f/dodo/lib/inert.py): Windmill would resolve a customer's
`$var:...` name into that secret in the next step's arguments.

`delivery_attempt` is a fresh key per trigger run. Windmill stores the flow inputs once
and a restarted (zombie) or retried step sees the same ones, so the record step can tell
its own run's earlier commit (go on to the sinks) from a redelivery (a new run, a new
key: a duplicate).
"""

import uuid

from f.dodo.lib.inert import defuse
from f.dodo.lib.signature import DEFAULT_TOLERANCE_S, NO_SECRET, SecretConfigError, verify_trigger_event
from f.dodo.lib.workspace import (WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS, WEBHOOK_TOLERANCE,
                                  integration_refs, optional_variable)


def preprocessor(event: dict):
    current = optional_variable(WEBHOOK_SECRET)
    if not current:  # never verify with the previous secret alone; say what to do, not the API's 404
        raise SecretConfigError("secret", NO_SECRET)
    secrets = [current, optional_variable(WEBHOOK_SECRET_PREVIOUS) or ""]
    tolerance = (optional_variable(WEBHOOK_TOLERANCE) or "").strip()
    inputs = defuse(verify_trigger_event(event, secrets, int(tolerance) if tolerance else DEFAULT_TOLERANCE_S))
    # verified first: a forged request costs no lookups
    return {**inputs, **integration_refs(), "delivery_attempt": uuid.uuid4().hex}
