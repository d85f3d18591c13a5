"""Signed sample deliveries (tests/fixtures/deliveries/*.json) and helpers to use them.

Each file is {"headers": {webhook-id, webhook-timestamp, webhook-signature}, "body": raw JSON
string exactly as signed}. The signatures use FIXTURE_SECRET at a fixed, stale time:
re-sign with `sign(...)` or `resign(name)` for anything that checks the tolerance.
"""

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

from standardwebhooks import Webhook

# Test-only secret: it signs the committed fixtures and nothing else.
FIXTURE_SECRET = "whsec_" + base64.b64encode(b"dodo-windmill-test-fixtures-only!").decode()
DELIVERIES = Path(__file__).parent / "fixtures" / "deliveries"


def sign(body: str, secret: str, msg_id: str, ts: int | None = None) -> dict:
    """Standard Webhooks headers for `body`, signed with `secret` at `ts` (default: now)."""
    ts = int(datetime.now(timezone.utc).timestamp()) if ts is None else int(ts)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def load_delivery(name: str) -> dict:
    """The committed delivery `name` (e.g. "payment.succeeded", "payment.succeeded.jpy")."""
    return json.loads((DELIVERIES / f"{name}.json").read_text(encoding="utf-8"))


def all_deliveries() -> list[tuple[str, dict]]:
    """Every committed delivery, sorted by name."""
    return [(p.stem, load_delivery(p.stem)) for p in sorted(DELIVERIES.glob("*.json"))]


def envelope(name: str) -> dict:
    """The parsed body of delivery `name`."""
    return json.loads(load_delivery(name)["body"])


def resign(name: str, secret: str = FIXTURE_SECRET, ts: int | None = None) -> dict:
    """Delivery `name` with its headers signed again at `ts` (default: now)."""
    d = load_delivery(name)
    return {"headers": sign(d["body"], secret, d["headers"]["webhook-id"], ts), "body": d["body"]}
