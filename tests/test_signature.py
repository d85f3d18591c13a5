"""Standard Webhooks verification: one test per failure mode, rotation, tolerance, and
the entry flow's preprocessor against a real HTTP stand-in of Windmill's variables API."""

import base64
import hashlib
import hmac
import importlib
import json
import re
from datetime import datetime, timezone

import pytest
import wmill.client
from standardwebhooks import Webhook
from werkzeug import Response

from f.dodo.lib import signature as sig
from f.dodo.lib.errors import EventError, SignatureError

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
CURRENT = "whsec_" + base64.b64encode(b"current-secret-key-0123456789ab").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"previous-secret-key-0123456789a").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-key-0123456789abcd").decode()
BODY = b'{"business_id":"bus_1","type":"payment.succeeded","timestamp":"2026-01-01T00:00:00Z","data":{"payment_id":"pay_1","total_amount":1234}}'


def sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    """Independent reference: HMAC-SHA256 of `{id}.{ts}.{body}`, per Standard Webhooks."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret=CURRENT, msg_id="msg_1", ts=NOW, body=BODY) -> dict:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(body=BODY, hdrs=None, secrets=(CURRENT,), **kw):
    return sig.verify_delivery(body, headers() if hdrs is None else hdrs, list(secrets), now=kw.pop("now", NOW), **kw)


def test_valid_delivery_returns_the_parsed_body():
    assert verify() == json.loads(BODY)
    assert verify(BODY.decode()) == json.loads(BODY)  # str raw body, as Windmill's raw_string


def test_header_names_any_case_and_underscore_form():
    h = {k.upper().replace("-", "_"): v for k, v in headers().items()}
    assert verify(hdrs=h)["type"] == "payment.succeeded"


@pytest.mark.parametrize("missing", sig.HEADERS)
def test_missing_header_is_named(missing):
    h = headers()
    del h[missing]
    with pytest.raises(sig.MissingHeaderError) as err:
        verify(hdrs=h)
    assert err.value.field == missing


def test_all_headers_missing_names_all_three():
    with pytest.raises(sig.MissingHeaderError) as err:
        verify(hdrs={})
    assert err.value.field == "webhook-id, webhook-timestamp, webhook-signature"


def test_empty_header_counts_as_missing():
    with pytest.raises(sig.MissingHeaderError, match="webhook-signature"):
        verify(hdrs={**headers(), "webhook-signature": "  "})


@pytest.mark.parametrize("value", ["garbage-without-comma", "v2,AAAA", "v1,not base64!", "v1"])
def test_malformed_signature_is_a_documented_error_not_a_bare_valueerror(value):
    with pytest.raises(sig.InvalidSignatureError) as err:
        verify(hdrs={**headers(), "webhook-signature": value})
    assert err.value.field == "webhook-signature"
    assert not isinstance(err.value, sig.SignatureMismatchError)


def test_wrong_signature_does_not_match():
    forged = sign(OTHER, "msg_1", NOW, BODY)
    with pytest.raises(sig.SignatureMismatchError):
        verify(hdrs={**headers(), "webhook-signature": forged})


def test_tampered_body_does_not_match():
    tampered = BODY.replace(b"1234", b"9234")
    with pytest.raises(sig.SignatureMismatchError, match="altered"):
        verify(tampered)


def test_reserialised_body_does_not_match():
    """Verifying re-serialised JSON instead of the exact bytes must fail."""
    with pytest.raises(sig.SignatureMismatchError):
        verify(json.dumps(json.loads(BODY)))


def test_tampered_id_or_timestamp_does_not_match():
    with pytest.raises(sig.SignatureMismatchError):
        verify(hdrs={**headers(), "webhook-id": "msg_2"})
    with pytest.raises(sig.SignatureMismatchError):
        verify(hdrs={**headers(), "webhook-timestamp": str(NOW - 1)})


def test_rotation_accepts_current_and_previous_secret():
    assert verify(hdrs=headers(secret=PREVIOUS), secrets=(CURRENT, PREVIOUS))["type"]
    assert verify(hdrs=headers(secret=CURRENT), secrets=(CURRENT, PREVIOUS))["type"]


def test_previous_secret_is_refused_once_dropped():
    with pytest.raises(sig.SignatureMismatchError, match="1 configured"):
        verify(hdrs=headers(secret=PREVIOUS), secrets=(CURRENT, ""))


def test_several_signatures_in_one_header_any_may_match():
    h = headers()
    h["webhook-signature"] = f"{sign(OTHER, 'msg_1', NOW, BODY)} {h['webhook-signature']} v1a,ignored"
    assert verify(hdrs=h)["type"]


def test_repeated_headers_as_list_or_comma_joined():
    h = headers()
    good, bad = h["webhook-signature"], sign(OTHER, "msg_1", NOW, BODY)
    assert verify(hdrs={**h, "webhook-signature": [bad, good], "webhook-id": ["msg_1", "msg_1"]})["type"]
    assert verify(hdrs={**h, "webhook-signature": f"{bad}, {good}", "webhook-id": "msg_1, msg_1"})["type"]


def test_conflicting_repeated_id_is_refused():
    with pytest.raises(sig.InvalidHeaderError) as err:
        verify(hdrs={**headers(), "webhook-id": ["msg_1", "msg_2"]})
    assert err.value.field == "webhook-id"


@pytest.mark.parametrize("stamp", ["2026-01-01T00:00:00Z", "1767225600.5", "-5", "abc"])
def test_non_integer_timestamp_is_refused(stamp):
    with pytest.raises(sig.InvalidHeaderError) as err:
        verify(hdrs={**headers(), "webhook-timestamp": stamp})
    assert err.value.field == "webhook-timestamp"


@pytest.mark.parametrize("skew, word", [(301, "old"), (-301, "new")])
def test_timestamp_outside_default_tolerance(skew, word):
    with pytest.raises(sig.TimestampToleranceError, match=f"^webhook-timestamp: too {word} "
                                                         r"\(tolerance 300 s\)$") as err:
        verify(now=NOW + skew)
    assert err.value.field == "webhook-timestamp" and "301" not in str(err.value)  # no digit of the header


def test_timestamp_at_the_tolerance_edge_is_accepted():
    assert verify(now=NOW + 300)["type"]
    assert verify(now=NOW - 300)["type"]


def test_tolerance_is_configurable():
    assert verify(now=NOW + 3600, tolerance_s=3600)["type"]
    with pytest.raises(sig.TimestampToleranceError, match="tolerance 10 s"):
        verify(now=NOW + 11, tolerance_s=10)


def _signed(body: bytes, **kw):
    return sig.verify_delivery(body, headers(body=body), [CURRENT], now=NOW, **kw)


@pytest.mark.parametrize("body", [b"not json", b'{"a":', b"", b'{"a": NaN}'])
def test_non_json_body_is_refused_after_verification(body):
    with pytest.raises(sig.InvalidBodyError, match="empty" if body == b"" else "not valid JSON") as err:
        _signed(body)
    assert err.value.field == "body"


@pytest.mark.parametrize("body", [b"[1,2]", b'"text"', b"42", b"null"])
def test_json_body_that_is_not_an_object_is_refused(body):
    with pytest.raises(sig.InvalidBodyError, match="not an object"):
        _signed(body)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """An object `depth` levels deep, alternating objects and arrays."""
    levels = range(depth - 1)  # inside the top object; level 0 is the innermost
    opens = b"".join(b'{"a":' if level % 2 else b"[" for level in reversed(levels))
    closes = b"".join(b"}" if level % 2 else b"]" for level in levels)
    return b'{"type":"payment.succeeded","data":' + opens + inner + closes + b"}" if depth > 1 else b"{}"


def test_max_depth_is_serde_jsons_default_recursion_limit():
    assert sig.MAX_DEPTH == 127  # serde_json: remaining_depth 128, refused when it reaches 0


def test_a_body_at_the_depth_limit_is_accepted():
    body = _signed(nested(sig.MAX_DEPTH))
    depth, node = 1, body["data"]
    while isinstance(node, (dict, list)):
        depth, node = depth + 1, node["a"] if isinstance(node, dict) else node[0]
    assert depth == sig.MAX_DEPTH and node == 1


@pytest.mark.parametrize("depth", [sig.MAX_DEPTH + 1, 600, 100_000])
def test_a_body_nested_too_deeply_is_a_documented_error(depth):
    """One level past the limit, the depth that broke the preprocessor's recursive defuse,
    and one past the JSON parser's own stack: all the same documented error."""
    with pytest.raises(sig.InvalidBodyError) as err:
        _signed(nested(depth))
    assert (err.value.field, err.value.problem) == ("body", "nested too deeply")


def test_depth_counts_the_deepest_branch_of_wide_bodies():
    wide = b'{"many":[' + b",".join([b'{"x":[1,2]}'] * 5000) + b'],"deep":' + nested(sig.MAX_DEPTH) + b"}"
    with pytest.raises(sig.InvalidBodyError, match="nested too deeply"):
        _signed(wide)  # the deep branch sits one level below the top: MAX_DEPTH + 1
    assert len(_signed(b'{"many":[' + b",".join([b'{"x":[1,2]}'] * 5000) + b"]}")["many"]) == 5000


def test_defuse_handles_any_depth_without_recursion():
    from f.dodo.lib.inert import defuse

    JOINER = "\u2060"  # WORD JOINER, written out: never taken from the code under test

    deep: list = ["$var:x"]
    for level in range(100_000):
        deep = {"$k": deep} if level % 2 else [deep, "$res:y", 1]
    out = defuse(deep)
    levels = 0
    while isinstance(out, (dict, list)):
        if isinstance(out, dict):
            assert list(out) == [JOINER + "$k"]
            out = out[JOINER + "$k"]
        else:
            assert out[1:] in ([JOINER + "$res:y", 1], [])
            out = out[0]
        levels += 1
    assert levels == 100_001 and out == JOINER + "$var:x"


def test_non_utf8_body_is_refused():
    with pytest.raises(sig.InvalidBodyError, match="UTF-8"):
        _signed(b'{"a":"\xff"}')


@pytest.mark.parametrize("secrets", [[], [""], [None], ["   "]])
def test_no_secret_configured(secrets):
    with pytest.raises(sig.SecretConfigError, match="f/dodo/webhook_secret is not set .* run f/dodo/setup"):
        verify(secrets=secrets)


def test_secrets_key_the_hmac_as_the_standard_webhooks_sdk_does():
    """The SDK (an independent reference) signs; the stdlib HMAC here verifies. An unpadded
    secret is accepted by the SDK (it appends "=="), so by this module too."""
    unpadded = CURRENT.rstrip("=")
    assert unpadded != CURRENT
    for secret in (CURRENT, unpadded, "whsec_" + base64.b64encode(b"k" * 24).decode()):
        signed = Webhook(secret).sign("msg_sdk", datetime.fromtimestamp(NOW, tz=timezone.utc), BODY.decode())
        h = {"webhook-id": "msg_sdk", "webhook-timestamp": str(NOW), "webhook-signature": signed}
        assert verify(hdrs=h, secrets=(secret,)) == json.loads(BODY)
        assert verify(hdrs=h, secrets=(secret.removeprefix("whsec_"),)) == json.loads(BODY)  # prefix optional


def test_malformed_secret_is_refused_without_echoing_it():
    bad = "whsec_!!!"
    with pytest.raises(sig.SecretConfigError) as err:
        verify(secrets=[bad])
    assert "!!!" not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__


def _every_failure():
    """One delivery per failure mode, each checked against the secrets."""
    h = headers()
    yield BODY, {}, [CURRENT, PREVIOUS]
    yield BODY, {**h, "webhook-signature": "nocomma"}, [CURRENT, PREVIOUS]
    yield BODY + b" ", h, [CURRENT, PREVIOUS]
    yield BODY, headers(secret=OTHER), [CURRENT, PREVIOUS]
    yield b"[1]", headers(body=b"[1]"), [CURRENT, PREVIOUS]
    yield b"nope", headers(body=b"nope"), [CURRENT, PREVIOUS]
    yield BODY, {**h, "webhook-timestamp": str(NOW - 10_000)}, [CURRENT, PREVIOUS]
    yield BODY, h, [CURRENT + "%%%", PREVIOUS]


def test_secret_never_appears_in_any_error():
    seen = 0
    for body, hdrs, secrets in _every_failure():
        with pytest.raises(SignatureError) as err:
            sig.verify_delivery(body, hdrs, secrets, now=NOW)
        text = f"{err.value} {err.value!r} {err.value.args} {err.value.field} {err.value.problem}"
        for secret in (CURRENT, PREVIOUS):
            for fragment in (secret, secret.removeprefix("whsec_"), base64.b64decode(secret[6:]).decode()):
                assert fragment not in text
        seen += 1
    assert seen == 8


def test_errors_are_documented_event_errors():
    for cls in (
        sig.MissingHeaderError, sig.InvalidHeaderError, sig.InvalidSignatureError,
        sig.SignatureMismatchError, sig.TimestampToleranceError, sig.InvalidBodyError,
        sig.MissingRawBodyError, sig.UnsupportedTriggerError, sig.SecretConfigError,
    ):
        assert issubclass(cls, SignatureError) and issubclass(cls, EventError) and issubclass(cls, ValueError)
    err = sig.InvalidBodyError("body", "not valid JSON")
    assert (err.field, str(err)) == ("body", "body: not valid JSON")


# --- preprocessor event shapes ------------------------------------------------------

def webhook_event(body=BODY, hdrs=None) -> dict:
    """`kind: webhook` as Windmill builds it with ?raw=true&include_header=webhook-id,..."""
    hdrs = headers(body=body) if hdrs is None else hdrs
    return {
        "kind": "webhook",
        "body": json.loads(body),
        "raw_string": body.decode(),
        "query": {"raw": "true"},
        "headers": {k.replace("-", "_"): v for k, v in hdrs.items()},
    }


def http_event(body=BODY) -> dict:
    """`kind: http` as an HTTP route with raw_string on builds it (every header, own names)."""
    return {
        "kind": "http",
        "trigger_path": "f/dodo/webhook",
        "body": json.loads(body),
        "raw_string": body.decode(),
        "route": "dodo/webhook",
        "path": "dodo/webhook",
        "method": "POST",
        "params": {},
        "query": {},
        "headers": {"content-type": "application/json", "user-agent": "Svix-Webhooks/1.0", **headers(body=body)},
    }


def test_headers_from_webhook_event_use_underscore_names():
    assert sig.headers_from_event(webhook_event()) == headers()


def test_headers_from_http_event_keep_their_names_and_drop_others():
    assert sig.headers_from_event(http_event()) == headers()


@pytest.mark.parametrize("make", [webhook_event, http_event])
def test_verify_trigger_event_returns_flow_inputs(make):
    assert sig.verify_trigger_event(make(), [CURRENT], now=NOW) == {"event": json.loads(BODY), "webhook_id": "msg_1"}


def test_webhook_without_include_header_names_the_missing_headers():
    event = webhook_event()
    event["headers"] = {}
    with pytest.raises(sig.MissingHeaderError, match="webhook-id, webhook-timestamp, webhook-signature"):
        sig.verify_trigger_event(event, [CURRENT], now=NOW)


def test_webhook_without_raw_true_is_refused():
    event = webhook_event()
    event["raw_string"] = None
    with pytest.raises(sig.MissingRawBodyError, match=r"\?raw=true"):
        sig.verify_trigger_event(event, [CURRENT], now=NOW)


@pytest.mark.parametrize("event", [{"kind": "email"}, {"kind": None}, {}, "text"])
def test_other_trigger_kinds_are_refused(event):
    with pytest.raises(sig.UnsupportedTriggerError):
        sig.verify_trigger_event(event, [CURRENT], now=NOW)


# --- the flow's preprocessor script, against a stand-in of Windmill's variables API ---

@pytest.fixture
def windmill_api(httpserver, monkeypatch):
    monkeypatch.setenv("BASE_INTERNAL_URL", httpserver.url_for("").rstrip("/"))
    monkeypatch.setenv("WM_WORKSPACE", "ws")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    monkeypatch.delenv("WM_MOCKED_API_FILE", raising=False)
    monkeypatch.setattr(wmill.client, "_client", None)
    variables = {}

    def handler(request):
        assert request.headers.get("Authorization") == "Bearer job-token"
        name = request.path.split("/variables/get_value/", 1)[1]
        if name not in variables:
            return Response("not found", status=404)
        return Response(json.dumps(variables[name]), content_type="application/json")

    def exists(request):  # the optional integrations: none exists (only their existence is asked)
        assert request.headers.get("Authorization") == "Bearer job-token"
        return Response("false", content_type="application/json")

    httpserver.expect_request(re.compile(r"^/api/w/ws/variables/get_value/.+$"), method="GET").respond_with_handler(
        handler)
    def custom_flow(request):  # f/dodo/custom as shipped: no steps (Windmill's flows/get)
        assert request.headers.get("Authorization") == "Bearer job-token"
        return Response(json.dumps({"path": "f/dodo/custom", "value": {"modules": []}}),
                        content_type="application/json")

    httpserver.expect_request(re.compile(r"^/api/w/ws/(resources|variables)/exists/f/dodo/[a-z_]+$"),
                              method="GET").respond_with_handler(exists)
    httpserver.expect_request("/api/w/ws/flows/get/f/dodo/custom", method="GET").respond_with_handler(custom_flow)
    yield variables
    monkeypatch.setattr(wmill.client, "_client", None)


@pytest.fixture
def preprocessor():
    return importlib.import_module("f.dodo.webhook__flow.preprocessor").preprocessor


def fresh_event(secret=CURRENT, make=webhook_event):
    """A delivery signed now (the preprocessor checks against the real clock)."""
    import time

    event = make()
    event["headers"].update(
        {k.replace("-", "_") if make is webhook_event else k: v
         for k, v in headers(secret=secret, ts=int(time.time())).items()}
    )
    return event


def test_preprocessor_reads_secrets_from_variables(windmill_api, preprocessor):
    windmill_api["f/dodo/webhook_secret"] = CURRENT
    inputs = preprocessor(fresh_event())
    assert re.fullmatch(r"[0-9a-f]{32}", inputs.pop("delivery_attempt"))  # a fresh key per trigger run
    normalized, record = inputs.pop("normalized"), inputs.pop("record")  # for the SQL record step
    assert normalized["webhook_id"] == record["webhook_id"] == "msg_1" and record["event_type"] == normalized["event_type"]
    assert inputs == {"event": json.loads(BODY), "webhook_id": "msg_1"}
    assert preprocessor(fresh_event(make=http_event))["webhook_id"] == "msg_1"


def test_preprocessor_accepts_the_previous_secret_variable(windmill_api, preprocessor):
    windmill_api["f/dodo/webhook_secret"] = CURRENT
    with pytest.raises(sig.SignatureMismatchError):
        preprocessor(fresh_event(secret=PREVIOUS))
    windmill_api["f/dodo/webhook_secret_previous"] = PREVIOUS
    assert preprocessor(fresh_event(secret=PREVIOUS))["webhook_id"] == "msg_1"


def test_preprocessor_tolerance_variable(windmill_api, preprocessor):
    windmill_api["f/dodo/webhook_secret"] = CURRENT
    windmill_api["f/dodo/webhook_tolerance_s"] = "100000000000"
    assert preprocessor(webhook_event())["webhook_id"] == "msg_1"  # signed at NOW, long ago
    windmill_api["f/dodo/webhook_tolerance_s"] = "0"
    with pytest.raises(sig.TimestampToleranceError):
        preprocessor(webhook_event())


def test_preprocessor_refuses_a_deep_delivery_with_the_documented_error(windmill_api, preprocessor):
    import time

    windmill_api["f/dodo/webhook_secret"] = CURRENT
    body = nested(600)
    event = webhook_event(body, headers(body=body, ts=int(time.time())))
    with pytest.raises(sig.InvalidBodyError, match="^body: nested too deeply$"):
        preprocessor(event)


def test_preprocessor_without_current_secret_fails_loudly(windmill_api, preprocessor):
    with pytest.raises(sig.SecretConfigError, match="f/dodo/webhook_secret is not set .* run f/dodo/setup"):
        preprocessor(fresh_event())
