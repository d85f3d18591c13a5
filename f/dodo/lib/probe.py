"""Self-test deliveries: recognised, recorded in the inbox only, never counted.

f/dodo/send_test_event posts a signed `payment.succeeded` whose webhook-id starts with
`msg_selftest_` (a prefix Dodo's own ids never have; the id is part of the signed
content) and whose payment metadata carries `dodo_windmill_selftest: "true"`. The store
records it in the inbox as processed, so the self-test sees it arrive, but writes no
payment or customer row (revenue, payment counts and the CRM state stay as they were),
and the record step's result carries `test: true`, which stops the flow before the
sinks (no HubSpot contact, no notification, no digest line).
"""

from __future__ import annotations

ID_PREFIX = "msg_selftest_"
MARKER = {"dodo_windmill_selftest": "true"}


def is_probe(event: dict) -> bool:
    """A normalised event (or an envelope with its webhook_id) the self-test sent."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    return str(event.get("webhook_id") or "").startswith(ID_PREFIX) and all(meta.get(k) == v
                                                                               for k, v in MARKER.items())
