"""Bad input: whatever arrives, the normaliser returns a normalised event or raises a
documented `EventError` naming a field. Nothing else escapes."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f.dodo.lib.errors import EventError
from f.dodo.lib.events import EVENT_TYPES
from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import all_deliveries, envelope

NAMES = [n for n, _ in all_deliveries()]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", "0", "12.34", "1e9", "NaN", "2026-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00",
                     "0001-01-01T00:00:00+05:00", "USD", "jpy", "pay_1", " ", "\x00", "null"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
types = st.one_of(st.sampled_from(EVENT_TYPES), st.sampled_from(["subscription_started", "subscription_cancelled"]),
                  st.text(max_size=30), json_values)


def check(event, webhook_id=None):
    try:
        out = normalize_event(event, webhook_id)
    except EventError as e:
        assert isinstance(e.field, str) and e.field
        assert str(e).startswith(e.field + ": ") and len(str(e)) < 500
        return None
    assert isinstance(out, dict) and out["event_type"] and out["category"]
    return out


@FUZZ
@given(json_values)
def test_arbitrary_json(event):
    check(event)


@FUZZ
@given(st.dictionaries(st.sampled_from(["business_id", "type", "timestamp", "data", "event_type", "payload"]) | st.text(max_size=8),
                       json_values, max_size=6))
def test_arbitrary_envelope_like_objects(event):
    check(event)


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_fixture_with_one_field_replaced_or_deleted(name, data):
    body = envelope(name)
    target = body if data.draw(st.booleans()) else body["data"]
    key = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        del target[key]
    else:
        target[key] = data.draw(json_values)
    out = check(body)
    if out is not None:
        json.dumps(out)  # still JSON-safe


@FUZZ
@given(st.sampled_from(NAMES), types, st.data())
def test_fixture_with_wrong_type_and_nested_garbage(name, event_type, data):
    body = envelope(name)
    body["type"] = event_type
    if isinstance(body["data"].get("customer"), dict):
        body["data"]["customer"][data.draw(st.sampled_from(["email", "name", "customer_id", "metadata"]))] = data.draw(json_values)
    check(body, data.draw(st.none() | st.text(max_size=300)))


@FUZZ
@given(st.sampled_from(["payment.succeeded", "subscription_started", "subscription_cancelled", "dispute.opened",
                        "dispute.won"]),
       st.dictionaries(st.sampled_from(["payment_id", "subscription_id", "dispute_id", "amount", "currency", "timestamp",
                                        "metadata", "customer_email", "business_id", "status"]), json_values))
def test_seed_flat_shapes(event_type, fields):
    check({"event_type": event_type, **fields})


@pytest.mark.parametrize("field", ["type", "timestamp", "business_id", "data.payment_id", "data.total_amount",
                                   "data.currency", "data.customer.email", "data.metadata", "data.brand_new"])
def test_huge_strings(field):
    body = envelope("payment.succeeded")
    *path, last = field.split(".")
    target = body
    for p in path:
        target = target[p]
    for huge in ("9" * 200_000, "x" * 1_000_000, "2026-01-01T00:00:00" + "0" * 100_000 + "Z"):
        target[last] = huge
        out = check(body)
        if out is not None:
            assert field in ("business_id", "data.customer.email", "data.brand_new")


@pytest.mark.parametrize("where", ["data", "data.metadata", "data.customer.metadata", "data.extra", "top"])
def test_deep_nesting(where):
    deep = {}
    node = deep
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]
    body = envelope("payment.succeeded") if where != "data" else {"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z"}
    if where == "data":
        body["data"] = deep
    elif where == "top":
        body["nested"] = deep
    else:
        *path, last = where.split(".")
        target = body
        for p in path:
            target = target[p]
        target[last] = deep
    out = check(body)
    assert out is None or out["data"] is body["data"]


def test_deeply_nested_lists_as_the_event_and_as_ids():
    deep = []
    for _ in range(50_000):
        deep = [deep]
    check(deep)
    body = envelope("refund.failed")
    body["data"]["refund_id"] = deep
    with pytest.raises(EventError) as e:
        normalize_event(body)
    assert e.value.field == "data.refund_id"
