"""The committed fixtures, checked against the official dodopayments SDK (an independent reference)."""

import json
from datetime import datetime, timezone
from typing import get_args

import pytest
from pydantic import TypeAdapter
from standardwebhooks import Webhook

import dodopayments
from dodopayments.types import UnwrapWebhookEvent
from dodopayments.types.webhook_event_type import WebhookEventType

from f.dodo.lib.events import EVENT_TYPES
from tests.fixture_data import FIXTURE_SECRET, all_deliveries, envelope, resign

DELIVERIES = all_deliveries()
NAMES = [name for name, _ in DELIVERIES]
# The SDK's own class for each event type, read from its union.
SDK_CLASSES = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(UnwrapWebhookEvent)[0])
}


def test_one_fixture_per_sdk_event_type_and_currency_variants():
    sdk_types = set(get_args(WebhookEventType))
    assert set(EVENT_TYPES) == sdk_types and len(sdk_types) == 48
    assert sdk_types <= set(NAMES)
    currencies = {envelope(n)["data"].get("currency") for n in NAMES}
    assert {"JPY", "KRW"} & currencies and {"KWD", "BHD"} & currencies


@pytest.mark.parametrize("name", NAMES)
def test_fixture_validates_with_the_sdk_model_of_its_type(name):
    body = envelope(name)
    model = SDK_CLASSES[body["type"]]
    event = model.model_validate(body)  # strict pydantic validation, not construct()
    assert event.type == body["type"]
    # and the SDK's discriminated union picks that same class
    assert type(TypeAdapter(UnwrapWebhookEvent).validate_python(body)) is model


def test_sdk_validation_is_strict_enough_to_catch_a_broken_fixture():
    body = envelope("payment.succeeded")
    del body["data"]["payment_id"]
    with pytest.raises(ValueError, match="payment_id"):
        SDK_CLASSES["payment.succeeded"].model_validate(body)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_signature_verifies_and_sdk_unwrap_accepts_it(name):
    delivery = dict(DELIVERIES)[name]
    # The committed signature is valid for the committed body at its own timestamp ...
    wh = Webhook(FIXTURE_SECRET)
    ts = int(delivery["headers"]["webhook-timestamp"])
    expected = wh.sign(delivery["headers"]["webhook-id"], datetime.fromtimestamp(ts, timezone.utc), delivery["body"])
    assert delivery["headers"]["webhook-signature"] == expected
    # ... and a fresh one passes the SDK's own unwrap (verify + parse).
    fresh = resign(name)
    client = dodopayments.DodoPayments(bearer_token="test-only", webhook_key=FIXTURE_SECRET)
    event = client.webhooks.unwrap(fresh["body"], headers=fresh["headers"])
    assert event.type == json.loads(delivery["body"])["type"]


def test_tampered_fixture_is_rejected_by_the_sdk():
    fresh = resign("payment.succeeded")
    client = dodopayments.DodoPayments(bearer_token="test-only", webhook_key=FIXTURE_SECRET)
    with pytest.raises(Exception, match="(?i)signature"):
        client.webhooks.unwrap(fresh["body"].replace("2999", "2998"), headers=fresh["headers"])
