"""Analytics destinations (PostHog capture, Segment-spec track/identify) run inside the
CRM step, once per delivery through the ledger, against stand-ins that check each request
as the providers document it (tests/standin_checks.py) and deduplicate as they do."""

import json

import pytest
from werkzeug import Response

from f.dodo.lib import analytics, destinations, ledger
from f.dodo.lib.errors import is_permanent
from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import envelope, load_delivery
from tests.standin_checks import posthog_capture, segment_call

KEY, WRITE_KEY = "phc_test_project_key", "seg-write-key"


def event(name: str) -> dict:
    return normalize_event(envelope(name), load_delivery(name)["headers"]["webhook-id"])


class PostHogStandIn:
    """Events by uuid (PostHog deduplicates on it); every request counted."""

    def __init__(self, server):
        self.events, self.requests, self.fail_next = {}, 0, []
        server.expect_request("/i/v0/e/", method="POST").respond_with_handler(self.capture)

    def capture(self, request):
        body = posthog_capture(request, KEY)
        self.requests += 1
        if self.fail_next:
            return self.fail_next.pop(0)
        self.events[body["uuid"]] = body
        return Response(json.dumps({"status": "Ok"}), 200, content_type="application/json")


class SegmentStandIn:
    def __init__(self, server):
        self.messages, self.calls, self.fail_next = {}, [], []
        for path in ("/v1/identify", "/v1/track"):
            server.expect_request(path, method="POST").respond_with_handler(self.call)

    def call(self, request):
        call, body = segment_call(request, WRITE_KEY)
        self.calls.append(call)
        if self.fail_next:
            return self.fail_next.pop(0)
        self.messages[body["messageId"]] = (call, body)
        return Response(json.dumps({"success": True}), 200, content_type="application/json")


@pytest.fixture
def posthog(httpserver):
    return PostHogStandIn(httpserver), {"api_key": KEY, "host": httpserver.url_for("")}


@pytest.fixture
def segment(httpserver):
    return SegmentStandIn(httpserver), {"write_key": WRITE_KEY, "base_url": httpserver.url_for("")}


def test_posthog_gets_the_customer_and_exact_revenue_once_per_delivery(db, posthog, sleeps):
    stand, resource = posthog
    paid, yen = event("payment.succeeded"), event("payment.succeeded.jpy")
    for e in (paid, yen, paid):  # the third is a replay of the first
        destinations.deliver(db.conn, e, {"posthog": resource}, sleep=sleeps.append)
    assert stand.requests == 2 and len(stand.events) == 2
    first = stand.events[analytics.event_uuid(paid["webhook_id"])]
    assert first["event"] == "payment.succeeded" and first["distinct_id"] == "cus_8VbC6JDZzPEqfBPUdpj0K"
    assert (first["properties"]["revenue"], first["properties"]["currency"]) == ("29.99", "USD")
    assert first["properties"]["$set"] == {"email": "ana.souza@example.com", "name": "Ana Souza"}
    assert first["timestamp"] == "2026-03-02T10:15:00.120000Z"
    second = stand.events[analytics.event_uuid(yen["webhook_id"])]
    assert (second["properties"]["revenue"], second["properties"]["currency"]) == ("4980", "JPY")
    assert [r["status"] for r in ledger.rows(db.conn, paid["webhook_id"])] == ["sent"]


def test_a_refund_is_negative_revenue():
    assert analytics.properties(event("refund.succeeded"))["revenue"] == "-10.00"
    assert analytics.properties(event("subscription.active"))["mrr"] == "15.00"


def test_posthog_429_honours_retry_after_and_5xx_backs_off(db, posthog, sleeps):
    stand, resource = posthog
    stand.fail_next = [Response("slow down", 429, headers={"Retry-After": "7"}), Response("oops", 503)]
    result = destinations.deliver(db.conn, event("payment.succeeded"), {"posthog": resource}, sleep=sleeps.append)
    assert result["posthog"]["status"] == "sent" and stand.requests == 3 and len(stand.events) == 1
    assert sleeps[0] == 7.0 and len(sleeps) == 2


def test_a_refused_key_fails_fast_with_the_fix_and_a_replay_sends_it_once(db, posthog, segment, sleeps):
    ph, ph_resource = posthog
    seg, seg_resource = segment
    ph.fail_next = [Response(json.dumps({"type": "authentication_error", "code": "invalid_api_key",
                                         "detail": "Project API key invalid."}), 401,
                             content_type="application/json")]
    paid = event("payment.succeeded")
    both = {"posthog": ph_resource, "segment": seg_resource}
    with pytest.raises(destinations.DestinationsFailed) as failed:
        destinations.deliver(db.conn, paid, both, sleep=sleeps.append)
    assert "Project API key invalid" in str(failed.value) and "f/dodo/posthog" in str(failed.value)
    assert is_permanent(failed.value)  # the step is not retried (errors.RETRY_IF); a replay is the cure
    assert ph.requests == 1 and sleeps == []  # no retry of a permanent error
    assert len(seg.messages) == 2  # the other destination still went out
    rows = {r["channel"]: r["status"] for r in ledger.rows(db.conn, paid["webhook_id"])}
    assert rows == {"posthog": "failed", "segment": "sent"}
    destinations.deliver(db.conn, paid, both, sleep=sleeps.append)  # the replay, key fixed
    assert ph.requests == 2 and len(ph.events) == 1 and seg.calls == ["identify", "track"]


def test_segment_identifies_then_tracks_with_the_delivery_id_as_message_id(db, segment, sleeps):
    stand, resource = segment
    paid = event("payment.succeeded")
    destinations.deliver(db.conn, paid, {"segment": resource}, sleep=sleeps.append)
    assert stand.calls == ["identify", "track"]
    call, track = stand.messages[paid["webhook_id"]]
    assert call == "track" and track["userId"] == "cus_8VbC6JDZzPEqfBPUdpj0K"
    assert (track["properties"]["revenue"], track["properties"]["currency"]) == ("29.99", "USD")
    _, identify = stand.messages[paid["webhook_id"] + ":identify"]
    assert identify["traits"] == {"email": "ana.souza@example.com", "name": "Ana Souza"}


def test_customer_text_stays_text(db, segment, sleeps):
    stand, resource = segment
    paid = event("payment.succeeded") | {"customer_name": "\u2060$var:f/dodo/webhook_secret"}
    destinations.deliver(db.conn, paid, {"segment": resource}, sleep=sleeps.append)
    _, identify = stand.messages[paid["webhook_id"] + ":identify"]
    assert identify["traits"]["name"] == "\u2060$var:f/dodo/webhook_secret"  # sent as received, defused


def test_unconfigured_costs_nothing_and_a_half_configured_resource_names_the_fix(db, sleeps):
    paid = event("payment.succeeded")
    assert destinations.deliver(db.conn, paid, None) == {}
    assert destinations.deliver(db.conn, paid, {"posthog": None, "segment": {}}) == {}
    assert ledger.rows(db.conn, paid["webhook_id"]) == []
    with pytest.raises(destinations.DestinationsFailed, match="set api_key"):
        destinations.deliver(db.conn, paid, {"posthog": {"host": "http://127.0.0.1:9"}})


def test_an_event_without_a_customer_is_skipped(db, posthog, sleeps):
    stand, resource = posthog
    payout = event("payout.success")
    result = destinations.deliver(db.conn, payout, {"posthog": resource}, sleep=sleeps.append)
    assert result["posthog"]["status"] == "skipped" and stand.requests == 0


def test_a_destination_still_down_after_its_retries_lets_the_step_retry(db, posthog, segment, sleeps):
    ph, ph_resource = posthog
    seg, seg_resource = segment
    ph.fail_next = [Response("down", 503)] * 5
    seg.fail_next = [Response(json.dumps({"message": "bad key"}), 401, content_type="application/json")]
    with pytest.raises(destinations.DestinationsFailed) as failed:
        destinations.deliver(db.conn, event("payment.succeeded"), {"posthog": ph_resource, "segment": seg_resource},
                             sleep=sleeps.append)
    assert ph.requests == 5 and len(sleeps) == 4
    assert not is_permanent(failed.value)  # one transient failure: Windmill's step retry may cure it


def test_reconcile_heals_the_destinations_of_a_synthetic_event_once(db, posthog, outbox, monkeypatch):
    from f.dodo.lib import heal, notify  # noqa: PLC0415
    from f.dodo.lib import routing as rules  # noqa: PLC0415

    stand, resource = posthog
    monkeypatch.setattr(analytics.time, "sleep", lambda _s: None)
    hook = heal.sinks(db.conn, None, rules.load(None), notify.Transports(), {"posthog": resource})
    paid = envelope("payment.succeeded")
    assert hook("reconcile:payments:pay_x:1", paid).endswith("destinations done")
    hook("reconcile:payments:pay_x:1", paid)  # healed again: nothing more sent
    assert stand.requests == 1 and stand.events[analytics.event_uuid("reconcile:payments:pay_x:1")]["event"] == \
        "payment.succeeded"
