"""Email campaigns (Mailchimp audience + lifecycle tags) and calendar events (Google
Calendar) as per-event destinations: once per delivery (ledger), idempotent by email /
by client-chosen event id, newer wins through Postgres, against stateful stand-ins that
check the documented request shapes (tests/standin_checks.py)."""

import copy
import json

import pytest
from werkzeug import Response

from f.dodo.lib import campaigns, destinations, gcalendar, ledger, store
from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import envelope
from tests.standin_checks import gcal_call, mailchimp_call

API_KEY, LIST = "0123456789abcdef0123456789abcdef-us21", "a1b2c3d4e5"
TOKEN = "ya29.test-token"
EMAIL = "ana.souza@example.com"


def event(name: str, msg: str, at: str | None = None, **data) -> dict:
    env = copy.deepcopy(envelope(name))
    env["timestamp"] = at or env["timestamp"]
    env["data"].update(data)
    return normalize_event(env, msg)


class MailchimpStandIn:
    """Members by subscriber hash, with status and tags, as Mailchimp keeps them."""

    def __init__(self, server):
        self.members, self.puts, self.fail_next = {}, 0, []
        server.expect_request(campaigns_path_re(), method="PUT").respond_with_handler(self.handle)
        server.expect_request(campaigns_path_re(), method="POST").respond_with_handler(self.handle)

    def handle(self, request):
        kind, h, body = mailchimp_call(request, API_KEY, LIST)
        if self.fail_next:
            return self.fail_next.pop(0)
        if kind == "PUT":
            self.puts += 1
            member = self.members.setdefault(h, {"status": body["status_if_new"], "tags": set()})
            member |= {"email": body["email_address"], "merge_fields": body["merge_fields"]}
        else:
            member = self.members.get(h)
            if member is None:
                return Response(json.dumps({"title": "Resource Not Found", "status": 404}), 404)
            for t in body["tags"]:
                (member["tags"].add if t["status"] == "active" else member["tags"].discard)(t["name"])
            return Response(status=204)
        return Response(json.dumps({"id": h, "status": member["status"]}), 200, content_type="application/json")


def campaigns_path_re():
    from tests.standin_checks import MAILCHIMP_MEMBER  # noqa: PLC0415
    return MAILCHIMP_MEMBER


class CalendarStandIn:
    """Events by id; a deleted id stays taken (insert answers 409), as Google does."""

    def __init__(self, server):
        self.events, self.calls = {}, []
        self.race_insert = None  # an id another writer inserts just before our insert
        for method in ("PUT", "POST", "DELETE"):
            server.expect_request(gcal_events_re(), method=method).respond_with_handler(self.handle)

    def handle(self, request):
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":  # Google's answer to an expired token
            return Response(json.dumps({"error": {"code": 401, "message": "Request had invalid authentication "
                                                  "credentials.", "status": "UNAUTHENTICATED"}}), 401,
                            content_type="application/json")
        method, eid, body = gcal_call(request, TOKEN)
        self.calls.append((method, eid))
        existing = self.events.get(eid)
        if method == "POST":
            if eid == self.race_insert:
                self.race_insert, existing = None, {"summary": "theirs", "status": "confirmed"}
                self.events[eid] = existing
            if existing is not None:
                return Response(json.dumps({"error": {"code": 409, "message": "The requested identifier already exists."}}), 409)
            self.events[eid] = body | {"status": body.get("status", "confirmed")}
        elif method == "PUT":
            if existing is None:
                return Response(json.dumps({"error": {"code": 404, "message": "Not Found"}}), 404)
            self.events[eid] = body
        else:
            if existing is None or existing["status"] == "cancelled":
                return Response(json.dumps({"error": {"code": 410, "message": "Resource has been deleted"}}), 410)
            existing["status"] = "cancelled"
            return Response(status=204)
        return Response(json.dumps(self.events[eid] | {"id": eid}), 200, content_type="application/json")

    def live(self) -> dict:
        return {k: v for k, v in self.events.items() if v["status"] != "cancelled"}


def gcal_events_re():
    from tests.standin_checks import GCAL_EVENTS  # noqa: PLC0415
    return GCAL_EVENTS


@pytest.fixture
def mailchimp(httpserver):
    return MailchimpStandIn(httpserver), {"api_key": API_KEY, "list_id": LIST, "base_url": httpserver.url_for("")}


@pytest.fixture
def calendar(httpserver):
    return CalendarStandIn(httpserver), {"token": TOKEN, "base_url": httpserver.url_for("")}


def deliver(conn, ev, resources, sleeps):
    assert store.record_event(conn, ev)["status"] in ("recorded", "duplicate")
    return destinations.deliver(conn, ev, resources, sleep=sleeps.append)


# --- Mailchimp -------------------------------------------------------------------------

def test_the_member_follows_the_lifecycle_and_a_late_event_does_not_undo_churn(db, mailchimp, sleeps):
    stand, resource = mailchimp
    h = campaigns.subscriber_hash(EMAIL)
    deliver(db.conn, event("subscription.active", "msg_a", "2026-03-02T10:28:00Z"), {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-customer"} and stand.members[h]["status"] == "transactional"
    assert stand.members[h]["merge_fields"] == {"FNAME": "Ana", "LNAME": "Souza"}
    deliver(db.conn, event("subscription.on_hold", "msg_h", "2026-03-02T10:30:00Z"), {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-customer", "dodo-payment-failing"}
    deliver(db.conn, event("subscription.cancelled", "msg_c", "2026-03-02T10:34:00Z"), {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-churned"}
    late = event("subscription.active", "msg_late", "2026-03-02T10:20:00Z")  # older, delivered last
    deliver(db.conn, late, {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-churned"} and len(stand.members) == 1
    deliver(db.conn, late, {"mailchimp": resource}, sleeps)  # a replay: nothing sent
    assert stand.puts == 4
    assert [r["status"] for r in ledger.rows(db.conn, "msg_late")] == ["sent"]


def test_payment_failing_is_the_newest_payment_not_the_last_delivery(db, mailchimp, sleeps):
    stand, resource = mailchimp
    h = campaigns.subscriber_hash(EMAIL)
    deliver(db.conn, event("payment.succeeded", "msg_p"), {"mailchimp": resource}, sleeps)  # created 2026-03-02
    old_failure = event("payment.failed", "msg_old", "2026-03-01T09:00:00Z", payment_id="pay_old",
                        created_at="2026-03-01T09:00:00Z")  # older, delivered last
    deliver(db.conn, old_failure, {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-customer"}
    new_failure = event("payment.failed", "msg_new", "2026-03-05T09:00:00Z", payment_id="pay_new",
                        created_at="2026-03-05T09:00:00Z")
    deliver(db.conn, new_failure, {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-customer", "dodo-payment-failing"}


def test_a_dunning_event_without_an_email_updates_the_member_it_names(db, mailchimp, sleeps):
    stand, resource = mailchimp
    h = campaigns.subscriber_hash(EMAIL)
    deliver(db.conn, event("subscription.active", "msg_a", "2026-03-02T10:28:00Z"), {"mailchimp": resource}, sleeps)
    deliver(db.conn, event("dunning.started", "msg_ds"), {"mailchimp": resource}, sleeps)  # customer id only
    assert stand.members[h]["tags"] == {"dodo-customer", "dodo-payment-failing"}
    deliver(db.conn, event("dunning.recovered", "msg_dr"), {"mailchimp": resource}, sleeps)
    assert stand.members[h]["tags"] == {"dodo-customer"} and len(stand.members) == 1


def test_an_unsubscribed_member_keeps_their_status(db, mailchimp, sleeps):
    stand, resource = mailchimp
    stand.members[campaigns.subscriber_hash(EMAIL)] = {"status": "unsubscribed", "tags": set()}
    deliver(db.conn, event("payment.succeeded", "msg_p"), {"mailchimp": resource | {"status_if_new": "subscribed"}},
            sleeps)
    assert stand.members[campaigns.subscriber_hash(EMAIL)]["status"] == "unsubscribed"


def test_a_wrong_audience_fails_fast_naming_list_id(db, mailchimp, sleeps):
    stand, resource = mailchimp
    stand.fail_next = [Response(json.dumps({"title": "Resource Not Found", "status": 404,
                                            "detail": "The requested resource could not be found."}), 404,
                                content_type="application/json")]
    with pytest.raises(destinations.DestinationsFailed, match="set list_id"):
        deliver(db.conn, event("payment.succeeded", "msg_p"), {"mailchimp": resource}, sleeps)
    assert sleeps == [] and stand.puts == 0
    deliver(db.conn, event("payment.succeeded", "msg_p"), {"mailchimp": resource}, sleeps)  # replay
    assert stand.members[campaigns.subscriber_hash(EMAIL)]["tags"] == {"dodo-customer"}


def test_mailchimp_429_is_retried(db, mailchimp, sleeps):
    stand, resource = mailchimp
    stand.fail_next = [Response("{}", 429, headers={"Retry-After": "2"})]
    deliver(db.conn, event("payment.succeeded", "msg_p"), {"mailchimp": resource}, sleeps)
    assert sleeps == [2.0] and stand.puts == 1


# --- Google Calendar -------------------------------------------------------------------

def test_renewal_is_put_moved_and_removed_with_a_stable_id(db, calendar, sleeps):
    stand, resource = calendar
    renewal = gcalendar.event_id("renewal", "sub_4GhJk8LmN2pQ6rS0tUv3w")
    deliver(db.conn, event("subscription.active", "msg_a", "2026-03-02T10:28:00Z"), {"gcal": resource}, sleeps)
    assert stand.live()[renewal]["start"] == {"date": "2026-04-02"}
    assert stand.live()[renewal]["summary"].startswith("Renewal: Ana Souza")
    deliver(db.conn, event("subscription.renewed", "msg_r", "2026-04-02T10:28:00Z",
                           next_billing_date="2026-05-02T10:15:00Z"), {"gcal": resource}, sleeps)
    assert list(stand.live()) == [renewal] and stand.live()[renewal]["start"] == {"date": "2026-05-02"}
    deliver(db.conn, event("subscription.cancelled", "msg_c", "2026-04-03T10:34:00Z"), {"gcal": resource}, sleeps)
    assert stand.live() == {}
    late = event("subscription.active", "msg_late", "2026-03-02T10:00:00Z")  # older, delivered last
    deliver(db.conn, late, {"gcal": resource}, sleeps)
    assert stand.live() == {}  # Postgres says cancelled: the late event does not bring it back


def test_a_trial_end_insert_that_meets_409_updates_instead(db, calendar, sleeps):
    stand, resource = calendar
    trial = gcalendar.event_id("trial", "sub_4GhJk8LmN2pQ6rS0tUv3w")
    stand.race_insert = trial
    deliver(db.conn, event("subscription.active", "msg_a", "2026-03-02T10:28:00Z", trial_period_days=14),
            {"gcal": resource}, sleeps)
    assert stand.live()[trial]["start"] == {"date": "2026-02-04"}  # created 2026-01-21 + 14 days
    assert stand.live()[trial]["summary"].startswith("Trial ends: Ana Souza")  # ours, not theirs
    assert [m for m, eid in stand.calls if eid == trial] == ["PUT", "POST", "PUT"]


def test_a_dispute_deadline_appears_and_goes_when_the_dispute_closes(db, calendar, sleeps):
    stand, resource = calendar
    eid = gcalendar.event_id("dispute", "dsp_6TyUi8OpA2sDf4GhJ0kLz")
    deliver(db.conn, event("dispute.opened", "msg_d"), {"gcal": resource}, sleeps)
    assert stand.live()[eid]["start"] == {"date": "2026-03-06"}  # opened 2026-03-02 + Dodo's 4 days to respond
    deliver(db.conn, event("dispute.won", "msg_w"), {"gcal": resource}, sleeps)
    assert stand.live() == {}
    deliver(db.conn, event("dispute.won", "msg_w"), {"gcal": resource}, sleeps)  # replay: no call
    assert [m for m, _ in stand.calls].count("DELETE") == 1
    # a late (older) dispute.opened after the dispute was won: Postgres's row decides, no deadline again
    deliver(db.conn, event("dispute.opened", "msg_late", "2026-03-02T09:00:00Z"), {"gcal": resource}, sleeps)
    assert stand.live() == {}


def test_customer_html_is_escaped_in_the_calendar(db, calendar, sleeps):
    stand, resource = calendar
    ev = event("dispute.opened", "msg_x")
    ev["customer_name"] = "<img src=x onerror=alert(1)>"
    destinations.deliver(db.conn, ev, {"gcal": resource}, sleep=sleeps.append)
    (body,) = stand.live().values()
    assert "<img" not in body["summary"] and "&lt;img" in body["summary"]


def test_an_expired_token_names_the_fix(db, calendar, sleeps):
    stand, resource = calendar
    with pytest.raises(destinations.DestinationsFailed, match="reconnect the resource f/dodo/gcal"):
        destinations.deliver(db.conn, event("dispute.opened", "msg_t"), {"gcal": resource | {"token": "expired"}},
                             sleep=sleeps.append)
    assert sleeps == [] and stand.events == {}  # no retry of a permanent error
