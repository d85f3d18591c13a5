"""Standard Webhooks verification of a Dodo delivery, over the exact raw bytes.

`verify_delivery` checks the three `webhook-*` headers, the timestamp tolerance and the
HMAC of `{id}.{timestamp}.{raw body}` against the current and the previous secret, then
parses the body (a JSON object at most MAX_DEPTH levels deep). Every failure raises a subclass of `SignatureError` (errors.py) whose
`field` names the header (or `body`, `raw_string`, `secret`, `kind`) at fault. No
message ever holds a secret, a header value or body text: a Windmill worker resolves
`$var:`/`$res:`/`$encrypted:`/`$WM_TOKEN`-like strings in the preprocessor's own
arguments (windmill-worker common.rs `transform_json`), headers included, so a header
value may already be a secret when it arrives here. A header value that still starts
with `$` (not resolved) is malformed. Only `raw_string`, which the worker never
resolves (it starts with `{`), is verified and parsed; `event.body` is never read.

The HMAC is the standard library's, keyed as the `standardwebhooks` SDK keys it
(`Webhook.__init__`: the base64 after `whsec_`, decoded with `"=="` appended, so unpadded
secrets work) over the bytes `Webhook.sign` signs. Not the SDK itself: every delivery,
forged ones included, runs this in a fresh process, and the SDK's import (typing,
datetime, its own json) cost more CPU than the rest of this module. Its `verify` was
never usable as is anyway (a 5-minute tolerance on the wall clock; a signature entry
without a comma raised a bare ValueError). tests/test_fixtures_sdk.py signs with the SDK
and verifies here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time

from f.dodo.lib.errors import SignatureError

ID, TIMESTAMP, SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"
HEADERS = (ID, TIMESTAMP, SIGNATURE)
DEFAULT_TOLERANCE_S = 300
# Deepest nesting of objects and arrays a body may have. Windmill's worker parses a job
# argument with serde_json (windmill-worker common.rs `transform_json`, whenever it holds
# `$var:`-like text, defused or not) and serde_json's default recursion limit refuses a
# 128th level: a deeper delivery would fail some later step, so it fails here, verified.
MAX_DEPTH = 127
_TIMESTAMP_RE = re.compile(r"\d{1,12}")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class MissingHeaderError(SignatureError):
    """One or more of webhook-id, webhook-timestamp, webhook-signature is absent or empty."""


class InvalidHeaderError(SignatureError):
    """A header is present but malformed (non-integer timestamp, conflicting duplicates)."""


class InvalidSignatureError(SignatureError):
    """webhook-signature holds no well-formed `v1,<base64>` entry."""


class SignatureMismatchError(InvalidSignatureError):
    """Well-formed signatures, none matching: the body, id or timestamp was altered,
    or the delivery was signed with a secret we do not hold."""


class TimestampToleranceError(SignatureError):
    """webhook-timestamp is further from now than the tolerance (replay or clock skew)."""


class InvalidBodyError(SignatureError):
    """The verified body is not UTF-8, not JSON, not a JSON object, or nested deeper than
    MAX_DEPTH levels ("nested too deeply")."""


class MissingRawBodyError(SignatureError):
    """The trigger event carries no raw_string, so the exact bytes cannot be verified."""


class UnsupportedTriggerError(SignatureError):
    """The preprocessor was called by a trigger kind other than webhook or http."""


class SecretConfigError(SignatureError):
    """No usable secret is configured (empty, or not `whsec_` + base64)."""


NO_SECRET = ("f/dodo/webhook_secret is not set (locally: DODO_WEBHOOK_SECRET); run f/dodo/setup, which stores "
             "the endpoint's signing secret")


def verify_delivery(
    raw_body: str | bytes,
    headers: dict,
    secrets: list[str],
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: int | None = None,
) -> dict:
    """Verify one delivery and return its parsed JSON object body.

    `headers` may use `webhook-id` or `webhook_id` names in any case; a value may be a
    list (a repeated header). `secrets` lists the current then the previous secret;
    empty entries are skipped. `now` (Unix seconds) defaults to the clock.
    """
    msg_id, timestamp, signatures = _read_headers(headers)
    _check_timestamp(timestamp, tolerance_s, int(time.time()) if now is None else now)
    text = _decode(raw_body)
    keys = _keys(secrets)
    signed = f"{msg_id}.{timestamp}.{text}".encode()  # Webhook.sign's bytes
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in signatures):
            return _parse_object(text)
    raise SignatureMismatchError(
        SIGNATURE,
        f"matches none of the {len(keys)} configured secret(s) (f/dodo/webhook_secret, "
        "f/dodo/webhook_secret_previous): the body, id or timestamp was altered, or it was signed with "
        "another secret; if Dodo sent it, run f/dodo/setup to store the endpoint's current secret",
    )


def headers_from_event(event: dict) -> dict:
    """The three Standard Webhooks headers of a Windmill preprocessor event.

    `kind: webhook` passes only the headers named in `include_header`, lower-cased with
    `-` turned into `_`; `kind: http` (an HTTP route) passes every header under its
    lower-case name. Absent headers are left out (verify_delivery names them).
    """
    if not isinstance(event, dict):
        raise UnsupportedTriggerError("kind", "the preprocessor event is not an object")
    kind = event.get("kind")
    if kind not in ("webhook", "http"):
        raise UnsupportedTriggerError("kind", "this trigger kind is not supported: use a webhook or an HTTP route")
    raw = event.get("headers")
    found = _normalise_names(raw if isinstance(raw, dict) else {})
    return {name: found[name] for name in HEADERS if name in found}


def verify_trigger_event(
    event: dict, secrets: list[str], tolerance_s: int = DEFAULT_TOLERANCE_S, now: int | None = None
) -> dict:
    """The flow inputs `{event, webhook_id}` of a verified webhook or HTTP-route event."""
    headers = headers_from_event(event)
    raw = event.get("raw_string")
    if not isinstance(raw, str):
        raise MissingRawBodyError(
            "raw_string",
            "the trigger passed no raw body: call the webhook with ?raw=true "
            "or set raw_string: true on the HTTP route",
        )
    body = verify_delivery(raw, headers, secrets, tolerance_s, now)
    return {"event": body, "webhook_id": _single(headers, ID)}


def _normalise_names(headers: dict) -> dict:
    return {str(k).lower().replace("_", "-"): v for k, v in headers.items()}


def _read_headers(headers: dict) -> tuple[str, int, list[bytes]]:
    if not isinstance(headers, dict):
        raise MissingHeaderError(", ".join(HEADERS), "missing (no headers)")
    headers = _normalise_names(headers)
    missing = [name for name in HEADERS if not _values(headers.get(name))]
    if missing:
        raise MissingHeaderError(", ".join(missing), "missing header")
    for name in HEADERS:
        if any(v.startswith("$") for v in _values(headers[name])):
            raise InvalidHeaderError(name, "malformed: a value starting with '$'")
    msg_id = _single(headers, ID)
    stamp = _single(headers, TIMESTAMP)
    if not _TIMESTAMP_RE.fullmatch(stamp):
        raise InvalidHeaderError(TIMESTAMP, "not Unix seconds")
    return msg_id, int(stamp), _signatures(headers[SIGNATURE])


def _values(value: object) -> list[str]:
    """A header's values: a repeated header arrives as a list or comma-joined."""
    items = value if isinstance(value, list) else [value]
    return [part.strip() for item in items if isinstance(item, str) for part in item.split(",") if part.strip()]


def _single(headers: dict, name: str) -> str:
    distinct = list(dict.fromkeys(_values(headers.get(name))))
    if len(distinct) != 1:
        raise InvalidHeaderError(name, f"{len(distinct)} conflicting values")
    return distinct[0]


def _signatures(value: object) -> list[bytes]:
    """Decoded `v1` signatures of a header like `v1,abc v1,def` (or repeated/comma-joined)."""
    items = value if isinstance(value, list) else [value]
    tokens = [t for item in items if isinstance(item, str) for t in re.split(r"[\s,]+", item) if t]
    sigs = []
    for version, sig in zip(tokens, tokens[1:]):
        if version == "v1" and _BASE64_RE.fullmatch(sig) and len(sig) % 4 == 0:
            sigs.append(base64.b64decode(sig))
    if not sigs:
        raise InvalidSignatureError(SIGNATURE, "no well-formed 'v1,<base64>' entry")
    return sigs


def _check_timestamp(timestamp: int, tolerance_s: int, now: int) -> None:
    skew = now - timestamp
    if abs(skew) > tolerance_s:
        when = "old" if skew > 0 else "new"
        # the skew is not shown: it would give away a resolved variable's digits
        raise TimestampToleranceError(TIMESTAMP, f"too {when} (tolerance {tolerance_s} s)")


def _decode(raw_body: str | bytes) -> str:
    if isinstance(raw_body, str):
        return raw_body
    if isinstance(raw_body, (bytes, bytearray)):
        try:
            return bytes(raw_body).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidBodyError("body", "not UTF-8 text") from None
    raise InvalidBodyError("body", f"must be str or bytes, not {type(raw_body).__name__}")


def _keys(secrets: list[str]) -> list[bytes]:
    """The HMAC key of each configured secret, as standardwebhooks' Webhook(secret) has it."""
    usable = [s for s in (secrets or []) if isinstance(s, str) and s.strip()]
    if not usable:
        raise SecretConfigError("secret", NO_SECRET)
    keys = []
    for index, secret in enumerate(usable):
        encoded = secret.strip().removeprefix("whsec_")
        try:
            # b64decode would silently drop stray characters and yield another key.
            if not _BASE64_RE.fullmatch(encoded):
                raise ValueError
            key = base64.b64decode(encoded + "==")  # never empty: the pattern wants a character
        except (binascii.Error, ValueError):
            # `from None`: the decoder's own exception must not travel with the secret nearby.
            raise SecretConfigError(
                "secret", f"secret #{index + 1} is not 'whsec_' followed by base64"
            ) from None
        keys.append(key)
    return keys


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_object(text: str) -> dict:
    if not text.strip():
        raise InvalidBodyError("body", "empty: a Dodo delivery is a JSON object; the sender must post the "
                                       "event (a webhook URL also needs ?raw=true)")
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # deeper than the parser's stack: far past MAX_DEPTH
        raise InvalidBodyError("body", "nested too deeply") from None
    except ValueError as exc:
        raise InvalidBodyError("body", f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise InvalidBodyError("body", f"JSON {type(body).__name__}, not an object")
    # Fewer brackets than the limit cannot nest past it (a typical delivery: no walk).
    if text.count("{") + text.count("[") > MAX_DEPTH and _deeper_than(body, MAX_DEPTH):
        raise InvalidBodyError("body", "nested too deeply")
    return body


def _deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (the top one is level 1).
    Iterative: the depth it checks is the one that would exhaust a recursive walk."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
