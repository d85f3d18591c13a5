"""Every byte of the signature counts: a last byte flipped, a signature cut short or one
with bytes appended is refused, for the current and the previous secret, on both trigger
kinds (a webhook URL: `kind: webhook`; an HTTP route: `kind: http`), in
`verify_delivery` and through the entry flow's preprocessor in the local runner.

The "wrong signature" tests elsewhere sign with another secret, which already differs in
the first byte: a comparison of only a prefix would pass them (issue 16).
"""
import base64
import hashlib
import hmac
import json
import time

import pytest
from fixture_data import load_delivery

from f.dodo.lib import signature as sig
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client

CURRENT = "whsec_" + base64.b64encode(b"current-secret-key-0123456789ab").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"previous-secret-key-0123456789a").decode()
SECRETS = {"current": CURRENT, "previous": PREVIOUS}
BODY = load_delivery("payment.succeeded")["body"]  # exact bytes, as Dodo signs them
NOW = 1_767_225_600


def mac(secret: str, msg_id: str, ts: int, body: str) -> bytes:
    """The 32-byte HMAC-SHA256 of `{id}.{ts}.{body}` (Standard Webhooks), computed here."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return hmac.new(key, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()


def flip_last(d: bytes) -> bytes:
    return d[:-1] + bytes([d[-1] ^ 0x01])


# Each alteration keeps a well-formed `v1,<base64>` entry, so only the comparison refuses it.
ALTERED = {
    "last-byte-flipped": flip_last,
    "first-byte-flipped": lambda d: bytes([d[0] ^ 0x80]) + d[1:],
    "truncated-by-one-byte": lambda d: d[:-1],
    "truncated-to-half": lambda d: d[:16],
    "truncated-to-two-bytes": lambda d: d[:2],
    "one-byte-appended": lambda d: d + b"\x00",
    "a-second-signature-appended": lambda d: d + d,
    "two-byte-prefix-then-zeros": lambda d: d[:2] + bytes(30),
    "empty": lambda d: b"",
}


def header(digest: bytes) -> str:
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, ts: int, alter=lambda d: d, msg_id: str = "msg_bytes") -> dict:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": header(alter(mac(secret, msg_id, ts, BODY)))}


def trigger_event(kind: str, hdrs: dict) -> dict:
    """The preprocessor event Windmill builds for a webhook URL (`?raw=true&include_header=...`:
    names with `_`) or for an HTTP route with raw_string on (every header, own names)."""
    if kind == "webhook":
        return {"kind": "webhook", "body": json.loads(BODY), "raw_string": BODY, "query": {"raw": "true"},
                "headers": {k.replace("-", "_"): v for k, v in hdrs.items()}}
    return {"kind": "http", "trigger_path": "f/dodo/webhook", "route": "dodo/webhook", "path": "dodo/webhook",
            "method": "POST", "params": {}, "query": {}, "body": json.loads(BODY), "raw_string": BODY,
            "headers": {"content-type": "application/json", **hdrs}}


def test_the_alterations_are_well_formed_and_differ():
    digest = mac(CURRENT, "msg_bytes", NOW, BODY)
    for name, alter in ALTERED.items():
        if name == "empty":
            continue
        value = header(alter(digest))
        assert sig._BASE64_RE.fullmatch(value[3:]) and len(value[3:]) % 4 == 0, name
        assert alter(digest) != digest, name


# ---------------------------------------------------------------- verify_delivery


@pytest.mark.parametrize("which", SECRETS)
def test_the_unaltered_signature_of_either_secret_is_accepted(which):
    hdrs = signed_headers(SECRETS[which], NOW)
    assert sig.verify_delivery(BODY, hdrs, [CURRENT, PREVIOUS], now=NOW) == json.loads(BODY)


@pytest.mark.parametrize("alteration", ALTERED)
@pytest.mark.parametrize("which", SECRETS)
def test_an_altered_signature_is_refused(which, alteration):
    hdrs = signed_headers(SECRETS[which], NOW, ALTERED[alteration])
    error = sig.InvalidSignatureError if alteration == "empty" else sig.SignatureMismatchError
    with pytest.raises(error) as err:
        sig.verify_delivery(BODY, hdrs, [CURRENT, PREVIOUS], now=NOW)
    assert err.value.field == "webhook-signature"


@pytest.mark.parametrize("alteration", ALTERED)
@pytest.mark.parametrize("which", SECRETS)
@pytest.mark.parametrize("kind", ["webhook", "http"])
def test_an_altered_signature_is_refused_on_both_trigger_kinds(kind, which, alteration):
    event = trigger_event(kind, signed_headers(SECRETS[which], NOW, ALTERED[alteration]))
    with pytest.raises(sig.InvalidSignatureError):
        sig.verify_trigger_event(event, [CURRENT, PREVIOUS], now=NOW)
    good = trigger_event(kind, signed_headers(SECRETS[which], NOW))
    assert sig.verify_trigger_event(good, [CURRENT, PREVIOUS], now=NOW)["webhook_id"] == "msg_bytes"


@pytest.mark.parametrize("which", SECRETS)
def test_an_altered_signature_beside_another_secrets_signature_is_refused(which):
    """Several entries in one header: each is compared whole, none lends bytes to another."""
    other = PREVIOUS if which == "current" else CURRENT
    digest = mac(SECRETS[which], "msg_bytes", NOW, BODY)
    wrong_other = flip_last(mac(other, "msg_bytes", NOW, BODY))
    hdrs = {"webhook-id": "msg_bytes", "webhook-timestamp": str(NOW),
            "webhook-signature": f"{header(wrong_other)} {header(flip_last(digest))} {header(digest[:31])}"}
    with pytest.raises(sig.SignatureMismatchError):
        sig.verify_delivery(BODY, hdrs, [CURRENT, PREVIOUS], now=NOW)


# ---------------------------------------------------------------- through the entry flow


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use their scripts' default schema


@pytest.fixture
def rotating_runner(db, outbox, sleeps):
    """The local runner with both the current and the previous secret configured."""
    quiet_wmill_client()
    cfg = bundle_config(db.url, CURRENT)
    cfg.variables["f/dodo/webhook_secret_previous"] = PREVIOUS
    return Runner(ROOT, cfg, sleep=sleeps.append, random=lambda: 0.5)


FLOW_ALTERED = ("last-byte-flipped", "truncated-by-one-byte", "one-byte-appended")


@pytest.mark.parametrize("which", SECRETS)
@pytest.mark.parametrize("kind", ["webhook", "http"])
def test_the_entry_flow_refuses_an_altered_signature_and_accepts_the_real_one(rotating_runner, db, kind, which):
    ts = int(time.time())
    for n, alteration in enumerate(FLOW_ALTERED):
        hdrs = signed_headers(SECRETS[which], ts, ALTERED[alteration], msg_id=f"msg_altered_{n}")
        run = rotating_runner.run_flow("f/dodo/webhook", event=trigger_event(kind, hdrs))
        pre = run.jobs[1]
        assert not run.success and pre.kind == "preprocessor" and not pre.success, alteration
        assert pre.result["error"]["name"] == "SignatureMismatchError", (alteration, pre.result)
        assert {j.step_id or j.kind for j in run.jobs} <= {"flow", "preprocessor", "failure"}, alteration
    assert db.conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0
    run = rotating_runner.run_flow("f/dodo/webhook", event=trigger_event(kind, signed_headers(SECRETS[which], ts)))
    assert run.success, [(j.step_id, j.kind, j.result) for j in run.jobs if not j.success]
    assert db.conn.execute("SELECT webhook_id FROM webhook_events").fetchall() == [("msg_bytes",)]
