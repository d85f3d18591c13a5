# requirements:
# annotated-types==0.8.0
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Flow preprocessor: verify a Dodo delivery and turn it into the flow inputs.

Runs for triggers (webhook, HTTP route) and for any API call of the flow without
`skip_preprocessor=true`; never for runs from the UI. Windmill calls
`preprocessor(event)`; its result `{event, webhook_id, delivery_attempt, normalized, record}` becomes the flow
inputs, plus a `$res:`/`$var:` reference for each optional integration that exists in the
workspace (a static `$res:` of a missing resource would fail the step instead of
falling back). Only references leave this step, never secret values.

Only `event.raw_string` is verified and parsed. The worker has already resolved
`$var:`/`$res:` strings in the rest of `event` (headers and body included) when this
runs, so nothing of them is trusted or shown: errors never hold a header value or body
text (f/dodo/lib/signature.py). The verified delivery is defused (f/dodo/lib/inert.py):
Windmill would resolve a customer's `$var:...` name into that secret in the next step's
arguments.

A verified delivery is then normalised here with the pydantic models and turned into the
call of the SQL function record_delivery (f/dodo/lib/record_call.py `fast_path`): the
flow's record step is one native PostgreSQL statement, not a Python process that would
import pydantic and psycopg2 again. The result adds `normalized` (the sinks' event) and
`record` (the call); a delivery the normaliser rejects gets neither, and the flow's
Python step records it failed with its error.

Every delivery pays this step's imports in a fresh process, forged ones included, so a
forged one imports only what verification needs: the standard library's hmac, hashlib,
base64 and socket (Windmill's API over one socket per call, f/dodo/lib/windmill_api.py),
the signature module and the variable lookups. What only a verified delivery needs
(defusing, the integration lookups) is imported after verification. A rejection raises
a SignatureError (`rejected`), for which the flow skips its failure module.

`delivery_attempt` is a fresh key per trigger run (128 random bits in hex, as `uuid4().hex`
without the uuid module). Windmill stores the flow inputs once
and a restarted (zombie) or retried step sees the same ones, so the record step can tell
its own run's earlier commit (go on to the sinks) from a redelivery (a new run, a new
key: a duplicate).
"""

import os

from f.dodo.lib.signature import DEFAULT_TOLERANCE_S, verify_trigger_event
from f.dodo.lib.workspace import integration_refs, webhook_secrets, webhook_tolerance_s


def preprocessor(event: dict):
    inputs = verify_trigger_event(event, webhook_secrets(), webhook_tolerance_s(DEFAULT_TOLERANCE_S))
    # verified: only now what a genuine delivery needs (a forged request costs no more imports or lookups)
    from f.dodo.lib.inert import defuse  # noqa: PLC0415
    from f.dodo.lib.record_call import fast_path  # noqa: PLC0415 - the pydantic models

    attempt = os.urandom(16).hex()
    fast = fast_path(inputs["event"], inputs["webhook_id"], attempt)
    return {**defuse({**inputs, **fast}), **integration_refs(), "delivery_attempt": attempt}
