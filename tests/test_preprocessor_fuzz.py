"""Bad input to the preprocessor's verification: arbitrary trigger events, bodies and
headers raise only the documented SignatureError subclasses, each naming its field;
nothing else escapes, and a correctly signed object body always comes through."""

import base64
import hashlib
import hmac
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f.dodo.lib import signature as sig
from f.dodo.lib.errors import SignatureError

NOW = 1_767_225_600
SECRET = "whsec_" + base64.b64encode(b"fuzz-secret-key-0123456789abcdef").decode()
FIELDS = {
    "body", "raw_string", "secret", "kind", "webhook-id", "webhook-timestamp", "webhook-signature",
    "webhook-id, webhook-timestamp, webhook-signature",
    "webhook-id, webhook-timestamp", "webhook-id, webhook-signature", "webhook-timestamp, webhook-signature",
}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
header_values = st.one_of(
    st.none(), st.integers(), st.text(max_size=80), st.lists(st.text(max_size=40), max_size=3),
    st.sampled_from(["v1,", "v1,AAAA", "v1,AAAA v1,BBBB", ",", "v1,,", "v1 v1", str(NOW), "-1", "99999999999999"]),
)
header_names = st.sampled_from(
    ["webhook-id", "webhook_id", "Webhook-Timestamp", "webhook_timestamp", "webhook-signature",
     "WEBHOOK_SIGNATURE", "content-type"]
) | st.text(max_size=20)
headers = st.dictionaries(header_names, header_values, max_size=6)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),  # deep nesting
    st.integers(1, 200_000).map(lambda n: json.dumps({"s": "x" * n})),  # huge strings
)


def assert_documented(err: SignatureError) -> None:
    assert isinstance(err, SignatureError)
    assert err.field in FIELDS, err.field
    assert SECRET[6:] not in str(err)


def sign(msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(SECRET[6:])
    return "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()


@SETTINGS
@given(body=bodies, hdrs=headers)
def test_arbitrary_bodies_and_headers_raise_only_documented_errors(body, hdrs):
    try:
        result = sig.verify_delivery(body, hdrs, [SECRET], now=NOW)
    except SignatureError as err:
        assert_documented(err)
    else:  # only a genuinely signed delivery can pass, and we never signed these
        raise AssertionError(f"unsigned delivery accepted: {result!r}")


@SETTINGS
@given(
    kind=st.sampled_from(["webhook", "http", "email", "kafka", None, 3]),
    raw=st.none() | st.text(max_size=100) | st.integers(),
    hdrs=st.none() | headers | st.text(max_size=20),
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
)
def test_arbitrary_trigger_events_raise_only_documented_errors(kind, raw, hdrs, extra):
    event = {**extra, "kind": kind, "raw_string": raw, "headers": hdrs}
    try:
        sig.verify_trigger_event(event, [SECRET], now=NOW)
    except SignatureError as err:
        assert_documented(err)
    else:
        raise AssertionError("unsigned trigger event accepted")


@SETTINGS
@given(event=json_values | st.text(max_size=20) | st.lists(st.integers(), max_size=3))
def test_non_object_events_raise_only_documented_errors(event):
    try:
        sig.verify_trigger_event(event, [SECRET], now=NOW)
    except SignatureError as err:
        assert_documented(err)
    else:
        raise AssertionError("an event without a signed raw body was accepted")


@SETTINGS
@given(
    body=json_values.filter(lambda v: isinstance(v, dict)) | st.dictionaries(st.text(max_size=5), json_values, max_size=8),
    # a value starting with `$` is malformed (the worker resolves such text; Dodo's ids are msg_...)
    msg_id=st.text(st.characters(blacklist_characters=",", blacklist_categories=("Cs", "Zs", "Cc")), min_size=1,
                   max_size=30).filter(lambda m: not m.strip().startswith("$")),
    skew=st.integers(-300, 300),
    kind=st.sampled_from(["webhook", "http"]),
)
def test_signed_object_bodies_always_verify(body, msg_id, skew, kind):
    raw = json.dumps(body, ensure_ascii=False).encode()
    hdrs = {"webhook-id": msg_id, "webhook-timestamp": str(NOW + skew), "webhook-signature": sign(msg_id, NOW + skew, raw)}
    if kind == "webhook":
        hdrs = {k.replace("-", "_"): v for k, v in hdrs.items()}
    event = {"kind": kind, "raw_string": raw.decode(), "headers": hdrs, "body": body}
    assert sig.verify_trigger_event(event, [SECRET], now=NOW) == {"event": body, "webhook_id": msg_id.strip()}
