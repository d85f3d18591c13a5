import copy

import pytest

from f.dodo.lib import events as ev
from f.dodo.lib.errors import EventError, MalformedField, MissingField
from tests.fixture_data import all_deliveries, envelope

NAMES = [n for n, _ in all_deliveries()]
ID_FIELD_OF_TYPE = {t: ev.ID_FIELDS[ev.model_for(t).__name__] for t in ev.EVENT_TYPES}


@pytest.mark.parametrize("prefix, category", [
    ("payment", "payment"), ("refund", "refund"), ("dispute", "dispute"), ("subscription", "subscription"),
    ("license_key", "license_key"), ("payout", "payout"), ("credit", "credit"),
    ("abandoned_checkout", "checkout"), ("dunning", "dunning"), ("entitlement_grant", "entitlement"),
])
def test_category_by_prefix_of_documented_types_only(prefix, category):
    documented = [t for t in ev.EVENT_TYPES if t.split(".")[0] == prefix]
    assert documented and {ev.category_of(t) for t in documented} == {category}
    # an undocumented type carries no state the store can trust, whatever its prefix
    assert ev.category_of(f"{prefix}.anything_new") == "unknown"


@pytest.mark.parametrize("t", ["invoice.paid", "payment", "paymentsucceeded", "", "license.created"])
def test_unknown_categories(t):
    assert ev.category_of(t) == "unknown"


def test_every_sdk_type_has_a_family_model():
    assert len(ev.EVENT_TYPES) == 48
    assert all(ev.model_for(t) is not None for t in ev.EVENT_TYPES)
    assert ev.model_for("credit.balance_low") is ev.CreditBalanceLow
    assert ev.model_for("credit.added") is ev.CreditLedgerEntry


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_parses_into_its_family(name):
    body = envelope(name)
    env = ev.parse_event(body)
    assert isinstance(env.payload, ev.model_for(body["type"]))
    assert getattr(env.payload, ID_FIELD_OF_TYPE[body["type"]]) == body["data"][ID_FIELD_OF_TYPE[body["type"]]]
    assert env.timestamp.tzinfo is not None
    # nothing dropped: every field the SDK sends is on the model (typed or extra)
    assert set(body["data"]) <= set(env.payload.model_dump())


def test_extra_fields_are_kept():
    body = envelope("payment.succeeded")
    body["data"]["brand_new_field"] = {"nested": [1, 2]}
    body["also_new"] = True
    env = ev.parse_event(body)
    assert env.payload.model_extra["brand_new_field"] == {"nested": [1, 2]}
    assert env.model_extra["also_new"] is True


def test_str_number_coercion_both_ways():
    d = envelope("dispute.opened")
    d["data"]["amount"] = 4999  # SDK types str; dodo-adapters#128 saw numbers
    assert ev.parse_event(d).payload.amount == 4999
    p = envelope("payment.succeeded")
    p["data"]["total_amount"] = "2999"  # SDK types int
    p["data"]["customer"]["phone_number"] = 5511999990000
    env = ev.parse_event(p)
    assert env.payload.total_amount == 2999
    assert env.payload.customer.phone_number == "5511999990000"
    c = envelope("credit.added")
    c["data"]["amount"] = 250
    assert ev.parse_event(c).payload.amount == "250"


def test_nulls_where_dodo_sends_null():
    p = envelope("payment.failed")
    assert p["data"]["tax"] is None and p["data"]["payment_method"] is None
    env = ev.parse_event(p)
    assert env.payload.tax is None and env.payload.settlement_tax is None
    p["data"].update(customer=None, currency=None, total_amount=None, status=None)
    assert ev.parse_event(p).payload.customer is None


def test_unknown_type_keeps_raw_data():
    raw = {"anything": [1, {"x": None}]}
    env = ev.parse_event({"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": raw})
    assert env.category == "unknown" and env.payload is None and env.data == raw
    env = ev.parse_event({"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z"})
    assert env.data is None


def test_new_type_in_a_known_family_is_unknown_and_kept():
    body = envelope("payment.succeeded")
    body["type"] = "payment.requires_action"
    env = ev.parse_event(body)  # kept (never dropped), but no state is read from it
    assert env.category == "unknown" and env.payload is None and env.data == body["data"]


def _err(body):
    with pytest.raises(EventError) as e:
        ev.parse_event(body)
    return e.value


@pytest.mark.parametrize("t", ev.EVENT_TYPES)
def test_missing_family_id_is_named(t):
    body = envelope(t)
    field = ID_FIELD_OF_TYPE[t]
    del body["data"][field]
    e = _err(body)
    assert isinstance(e, MissingField) and e.field == f"data.{field}" and str(e) == f"data.{field}: missing"
    body["data"][field] = None
    assert _err(body).field == f"data.{field}"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 300, "ünï", {"id": 1}, [1], True])
def test_malformed_family_id_is_named(bad):
    body = envelope("refund.succeeded")
    body["data"]["refund_id"] = bad
    e = _err(body)
    assert isinstance(e, MalformedField) and e.field == "data.refund_id"


@pytest.mark.parametrize("mutate, field, cls", [
    (lambda b: b.pop("type"), "type", MissingField),
    (lambda b: b.update(type=None), "type", MissingField),
    (lambda b: b.update(type=12), "type", MalformedField),
    (lambda b: b.update(type="pay ment"), "type", MalformedField),
    (lambda b: b.pop("timestamp"), "timestamp", MissingField),
    (lambda b: b.update(timestamp="yesterday"), "timestamp", MalformedField),
    (lambda b: b.update(timestamp=1767225600), "timestamp", MalformedField),
    (lambda b: b.update(timestamp="2026-13-01T00:00:00Z"), "timestamp", MalformedField),
    (lambda b: b.pop("data"), "data", MissingField),
    (lambda b: b.update(data="text"), "data", MalformedField),
    (lambda b: b["data"].update(total_amount=29.99), "data.total_amount", MalformedField),
    (lambda b: b["data"].update(total_amount="29.99"), "data.total_amount", MalformedField),
    (lambda b: b["data"].update(currency="US Dollar"), "data.currency", MalformedField),
    (lambda b: b["data"].update(customer="ana"), "data.customer", MalformedField),
    (lambda b: b["data"]["customer"].update(email=["a"]), "data.customer.email", MalformedField),
])
def test_strict_fields_are_named(mutate, field, cls):
    body = envelope("payment.succeeded")
    mutate(body)
    e = _err(body)
    assert isinstance(e, cls) and e.field == field and str(e).startswith(field + ": ")


def test_non_object_event():
    for bad in (None, [], "x", 1):
        assert _err(bad).field == "event"


def test_currency_is_upper_cased_and_timestamps_keep_offsets():
    body = envelope("refund.succeeded")
    body["data"]["currency"] = "usd"
    body["timestamp"] = "2026-03-02T12:15:00+02:00"
    env = ev.parse_event(body)
    assert env.payload.currency == "USD"
    assert env.timestamp.utcoffset().total_seconds() == 7200


def test_parse_does_not_mutate_input():
    body = envelope("subscription.renewed")
    before = copy.deepcopy(body)
    ev.parse_event(body)
    assert body == before
