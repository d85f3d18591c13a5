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
