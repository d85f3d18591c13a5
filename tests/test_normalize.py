"""The normaliser: shape, money, and the flat view against the seed's own JavaScript."""

import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import quickjs

from f.dodo.lib.errors import EventError, MalformedField, MissingField
from f.dodo.lib.normalizer import ID_KEYS, normalize_event
from f.dodo.normalize import main
from tests.fixture_data import all_deliveries, envelope

NAMES = [n for n, _ in all_deliveries()]
SEED_TYPES = [n for n in NAMES if n in ("payment.succeeded", "subscription.active", "subscription.cancelled")
              or n.startswith("dispute.") or n.startswith("payment.succeeded.") or n.startswith("subscription.active.")]
TOP_KEYS = {"event_type", "category", "webhook_id", "business_id", "occurred_at", "source", "entity_id",
            "customer_id", "customer_email", "customer_name", "amount", "amount_minor", "currency", "status",
            *ID_KEYS, "data", "flat"}

# The seed's three dashboard transforms, vendored verbatim with their source named.
SEED_JS_FILE = Path(__file__).parent / "fixtures" / "seed" / "transforms.js"
SEED_JS = re.sub(r"\A(//.*\n)+", "", SEED_JS_FILE.read_text(encoding="utf-8"))  # after its source header
SEED_JS_SHA256 = "7f3876086ce69448a76ed81af20b5cba52c598d57f64f1bb89b58b98d283beb0"  # of the seed's own text
HANDLERS = re.findall(r"function handler\(webhook\) \{.*?\nreturn webhook;\n\}", SEED_JS, re.S)


def test_seed_copy_is_the_vendored_seed_text():
    """The copy is byte for byte the seed's three handlers (hash taken from the seed
    document when vendored), each one a whole `handler(webhook)` function."""
    assert hashlib.sha256(SEED_JS.encode("utf-8")).hexdigest() == SEED_JS_SHA256
    assert len(HANDLERS) == 3 and "\n".join(HANDLERS) + "\n" == SEED_JS
    assert [re.search(r'"([a-z_.]+)"', h).group(1) for h in HANDLERS] == \
        ["payment.succeeded", "subscription.active", "dispute."]


def run_seed(body: dict) -> dict | None:
    """Run the seed transforms in QuickJS (as the Dodo dashboard runs them); the one that reshapes wins."""
    ctx = quickjs.Context()
    for i, h in enumerate(HANDLERS):
        ctx.eval(h.replace("function handler(", f"function handler{i}("))
    for i in range(len(HANDLERS)):
        out = ctx.eval(f"(function(w){{ const r = handler{i}(w); return r.payload === w0 ? null : JSON.stringify(r.payload); }})"
                       f"((function(){{ globalThis.w0 = {json.dumps(body)}; return {{eventType: w0.type, payload: w0}}; }})())")
        if out is not None:
            return json.loads(out)
    return None


# Literals, in each currency's ISO 4217 decimals (never computed by f.dodo.lib.money).
SEED_AMOUNTS = {
    **{f"dispute.{kind}": "49.99" for kind in ("accepted", "cancelled", "challenged", "expired", "lost", "opened",
                                                "won")},
    "dispute.opened.bhd": "7.250", "payment.succeeded": "29.99", "payment.succeeded.jpy": "4980",
    "payment.succeeded.kwd": "12.345", "subscription.active": "15.00", "subscription.active.krw": "29000",
}


@pytest.mark.parametrize("name", SEED_TYPES)
def test_flat_view_equals_the_seed_transform_except_true_decimals(name):
    body = envelope(name)
    seed = run_seed(body)
    assert seed is not None
    flat = normalize_event(body, "msg_1")["flat"]
    assert list(flat) == list(seed)  # same names, same order (JSON.stringify order)
    currency = body["data"].get("currency", "USD")
    minor = body["data"].get("total_amount", body["data"].get("recurring_pre_tax_amount", body["data"].get("amount")))
    if "amount" in seed:
        # the seed's toFixed(2) of minor / 100 is right for 2-decimal currencies only
        assert seed["amount"] == f"{Decimal(minor) / 100:.2f}"
        assert flat["amount"] == SEED_AMOUNTS[name]
        if currency in ("USD", "EUR"):
            assert flat["amount"] == seed["amount"]
    assert {k: v for k, v in flat.items() if k != "amount"} == {k: v for k, v in seed.items() if k != "amount"}


def test_payment_product_id_is_dropped_like_json_stringify_drops_undefined():
    flat = normalize_event(envelope("payment.succeeded"))["flat"]
    assert flat["metadata"] == {"business_id": "bus_Nq4bF8vT2xKp7LmR3sYw1"}
    body = envelope("payment.succeeded")
    body["data"]["product_id"] = "pdt_x"
    assert normalize_event(body)["flat"]["metadata"] == run_seed(body)["metadata"] == {
        "business_id": "bus_Nq4bF8vT2xKp7LmR3sYw1", "product_id": "pdt_x"}


def test_js_or_defaults_match_the_seed():
    body = envelope("payment.succeeded")
    body["data"].update(payment_method=None, currency="")
    flat, seed = normalize_event(body)["flat"], run_seed(body)
    assert flat["payment_method"] == seed["payment_method"] == "unknown"
    assert flat["currency"] == seed["currency"] == "USD"
    assert flat == seed
    d = envelope("dispute.won")
    d["data"]["remarks"] = ""
    assert normalize_event(d)["flat"]["remarks"] == run_seed(d)["remarks"] == ""


@pytest.mark.parametrize("name, amount, minor, currency", [
    ("payment.succeeded", "29.99", 2999, "USD"),
    ("payment.succeeded.jpy", "4980", 4980, "JPY"),
    ("payment.succeeded.kwd", "12.345", 12345, "KWD"),
    ("subscription.active.krw", "29000", 29000, "KRW"),
    ("dispute.opened.bhd", "7.250", 7250, "BHD"),
    ("refund.succeeded.jpy", "1500", 1500, "JPY"),
    ("payout.success", "12500.75", 1250075, "USD"),
])
def test_money_in_true_decimals(name, amount, minor, currency):
    out = normalize_event(envelope(name))
    assert (out["amount"], out["amount_minor"], out["currency"]) == (amount, minor, currency)
    assert out["flat"]["amount"] == amount


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_normalises_to_the_documented_shape(name):
    body = envelope(name)
    out = normalize_event(body, "msg_abc")
    assert set(out) == TOP_KEYS
    assert out["event_type"] == body["type"] and out["webhook_id"] == "msg_abc" and out["source"] == "envelope"
    assert out["business_id"] == body["business_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", out["occurred_at"])
    assert out["occurred_at"] == body["timestamp"]  # fixtures are already UTC with microseconds
    assert out["entity_id"] and out["category"] != "unknown"
    assert out["data"] == body["data"]
    assert out["flat"]["event_type"] and out["flat"]["timestamp"] == body["timestamp"]
    assert json.loads(json.dumps(out)) == out  # JSON-safe
    assert not any(isinstance(v, float) for v in _leaves(out))


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


@pytest.mark.parametrize("name, expected", [
    ("payment.succeeded", dict(category="payment", entity_id="pay_2IjeQm4hqU6RA4Z4kwDee", payment_id="pay_2IjeQm4hqU6RA4Z4kwDee",
                               product_id="pdt_7YtRe3WqA9sDf5GhJk2Lz", customer_id="cus_8VbC6JDZzPEqfBPUdpj0K",
                               customer_email="ana.souza@example.com", customer_name="Ana Souza", status="succeeded")),
    ("refund.succeeded", dict(category="refund", entity_id="ref_3FgHj7KlZ9xCvB1nM5qWe", refund_id="ref_3FgHj7KlZ9xCvB1nM5qWe",
                              payment_id="pay_2IjeQm4hqU6RA4Z4kwDee", amount="10.00", status="succeeded",
                              customer_email="ana.souza@example.com")),
    ("dispute.lost", dict(category="dispute", dispute_id="dsp_6TyUi8OpA2sDf4GhJ0kLz", status="dispute_lost", amount="49.99",
                          customer_id="cus_8VbC6JDZzPEqfBPUdpj0K")),
    ("subscription.renewed", dict(category="subscription", subscription_id="sub_4GhJk8LmN2pQ6rS0tUv3w",
                                  payment_id="pay_9KlMn3BvC7xZ1aSdF5gHj", product_id="pdt_7YtRe3WqA9sDf5GhJk2Lz",
                                  amount="15.00", status="active", customer_name="Ana Souza")),
    ("license_key.created", dict(category="license_key", license_key_id="lic_1QwErT5yUi9oPaS3dFgHj",
                                 entity_id="lic_1QwErT5yUi9oPaS3dFgHj", customer_id="cus_8VbC6JDZzPEqfBPUdpj0K", amount=None)),
    ("payout.created", dict(category="payout", payout_id="pout_8UhYt6RfEd4WsQ2aZxCvB", status="not_initiated")),
    ("credit.deducted", dict(category="credit", credit_entry_id="cle_2WsXe4DcR6fVt8GbY0hNu",
                             credit_entitlement_id="cde_5RtYu7IoP9aSd1FgH3jKl", amount=None, currency=None)),
    ("credit.balance_low", dict(category="credit", entity_id="cde_5RtYu7IoP9aSd1FgH3jKl",
                                subscription_id="sub_4GhJk8LmN2pQ6rS0tUv3w")),
    ("abandoned_checkout.recovered", dict(category="checkout", payment_id="pay_2IjeQm4hqU6RA4Z4kwDee", status="recovered")),
    ("dunning.started", dict(category="dunning", entity_id="sub_4GhJk8LmN2pQ6rS0tUv3w", status="recovering")),
    ("entitlement_grant.delivered", dict(category="entitlement", entitlement_grant_id="egr_7UjMi9KoL1pZa3SxD5cFv",
                                         entitlement_id="ent_3EdCr5TgB7yHn9UjM1kIo", status="Delivered")),
])
def test_family_fields(name, expected):
    out = normalize_event(envelope(name))
    assert {k: out[k] for k in expected} == expected


def test_license_key_itself_stays_out_of_the_flat_view():
    out = normalize_event(envelope("license_key.created"))
    assert "LK-7F3A" not in json.dumps(out["flat"])
    assert out["data"]["key"] == "LK-7F3A-92QX-K1MZ-5TBW"


def test_other_families_flat_views_in_seed_style():
    f = normalize_event(envelope("refund.succeeded"))["flat"]
    assert f == {"event_type": "refund.succeeded", "refund_id": "ref_3FgHj7KlZ9xCvB1nM5qWe",
                 "payment_id": "pay_2IjeQm4hqU6RA4Z4kwDee", "amount": "10.00", "currency": "USD",
                 "status": "succeeded", "is_partial": True, "reason": "Customer requested",
                 "customer_email": "ana.souza@example.com", "customer_name": "Ana Souza",
                 "customer_id": "cus_8VbC6JDZzPEqfBPUdpj0K", "business_id": "bus_Nq4bF8vT2xKp7LmR3sYw1",
                 "timestamp": envelope("refund.succeeded")["timestamp"]}
    p = normalize_event(envelope("payment.failed"))["flat"]
    assert p["payment_method"] == "unknown" and p["status"] == "failed" and p["error_code"] == "card_declined"
    s = normalize_event(envelope("subscription.on_hold"))["flat"]
    assert s["event_type"] == "subscription.on_hold" and s["status"] == "on_hold" and s["amount"] == "15.00"


def test_unknown_type_is_kept():
    raw = {"invoice_id": "inv_1", "total": 5}
    out = normalize_event({"business_id": "bus_1", "type": "invoice.paid", "timestamp": "2026-01-02T03:04:05Z",
                           "data": raw}, "msg_9")
    assert out["category"] == "unknown" and out["data"] == raw and out["entity_id"] is None
    assert out["occurred_at"] == "2026-01-02T03:04:05.000000Z"
    assert out["flat"] == {"event_type": "invoice.paid", "business_id": "bus_1", "timestamp": "2026-01-02T03:04:05Z"}


def test_occurred_at_is_utc_z():
    body = envelope("payment.succeeded")
    body["timestamp"] = "2026-03-02T12:15:00.5+02:00"
    assert normalize_event(body)["occurred_at"] == "2026-03-02T10:15:00.500000Z"
    body["timestamp"] = "2026-03-02T10:15:00"  # naive: taken as UTC
    assert normalize_event(body)["occurred_at"] == "2026-03-02T10:15:00.000000Z"


def test_unknown_currency_gives_no_amount_but_keeps_minor_units():
    body = envelope("payment.succeeded")
    body["data"]["currency"] = "ZZZ"
    out = normalize_event(body)
    assert (out["amount"], out["amount_minor"], out["currency"]) == (None, 2999, "ZZZ")


# --- the seed transforms' flat payloads, sent instead of the envelope ------------------


@pytest.mark.parametrize("name", SEED_TYPES)
def test_seed_flat_payloads_normalise_back(name):
    body = envelope(name)
    seed_flat = run_seed(body)
    full = normalize_event(body, "msg_1")
    out = normalize_event(seed_flat, "msg_1")
    assert out["source"] == "seed_flat" and out["data"] == seed_flat
    for k in ("event_type", "category", "occurred_at", "entity_id", "webhook_id", "payment_id", "subscription_id",
              "dispute_id", "customer_email", "amount_minor"):
        if (k == "amount_minor" and "amount" not in seed_flat) or (k == "customer_email" and "dispute" in name):
            continue
        assert out[k] == full[k], k
    if name.startswith("payment."):  # currency known: true decimals recovered from the seed's /100
        assert out["amount"] == full["amount"] and out["flat"]["amount"] == full["flat"]["amount"]
        assert out["business_id"] == full["business_id"]
    assert set(out) == TOP_KEYS


def test_seed_flat_subscription_started():
    out = normalize_event({"event_type": "subscription_started", "subscription_id": "sub_1", "customer_email": "a@b.c",
                           "customer_name": "A", "product_id": "pdt_1", "amount": "15.00", "frequency": "Month",
                           "next_billing": "2026-04-02T10:15:00Z", "customer_id": "cus_1",
                           "timestamp": "2026-03-02T10:15:00Z"})
    assert out["event_type"] == "subscription.active" and out["category"] == "subscription"
    assert (out["amount_minor"], out["amount"], out["currency"]) == (1500, None, None)
    assert out["customer_id"] == "cus_1" and out["product_id"] == "pdt_1"


@pytest.mark.parametrize("event, field, cls", [
    ({"event_type": "subscription_started", "timestamp": "2026-03-02T10:15:00Z"}, "subscription_id", MissingField),
    ({"event_type": "payment.succeeded", "payment_id": "pay_1"}, "timestamp", MissingField),
    ({"event_type": "dispute.opened", "dispute_id": "dsp_1", "timestamp": "2026-03-02T10:15:00Z", "amount": 49.99},
     "amount", MalformedField),
    ({"event_type": "dispute.opened", "dispute_id": "dsp_1", "timestamp": "2026-03-02T10:15:00Z", "amount": "NaN"},
     "amount", MalformedField),
    ({"event_type": "order_placed", "timestamp": "2026-03-02T10:15:00Z"}, "event_type", MalformedField),
    ({"event_type": 5}, "event_type", MalformedField),
])
def test_seed_flat_errors_name_the_field(event, field, cls):
    with pytest.raises(cls) as e:
        normalize_event(event)
    assert e.value.field == field


@pytest.mark.parametrize("bad", [5, ["msg"], "x" * 256])
def test_bad_webhook_id(bad):
    with pytest.raises(MalformedField) as e:
        normalize_event(envelope("payment.succeeded"), bad)
    assert e.value.field == "webhook_id"


def test_empty_webhook_id_is_none_and_main_is_the_library():
    body = envelope("dunning.recovered")
    assert main(body, "")["webhook_id"] is None
    assert main(body, "msg_x") == normalize_event(body, "msg_x")
    assert main(body)["webhook_id"] is None


def test_errors_are_value_errors_with_a_field():
    with pytest.raises(ValueError) as e:
        main({"type": "payment.succeeded", "timestamp": "2026-01-01T00:00:00Z", "data": {}})
    assert isinstance(e.value, EventError) and str(e.value) == "data.payment_id: missing"


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_timestamps_beyond_utc_range_are_malformed_not_crashes(ts):
    body = envelope("payment.succeeded")
    body["timestamp"] = ts
    with pytest.raises(MalformedField, match="^timestamp: out of range$"):
        normalize_event(body)
