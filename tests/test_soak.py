"""The soak, short: ~1,500 signed deliveries of generated lifecycles through two local
server processes, 30 % redeliveries, reordering, Postgres restarted twice, HubSpot 429/5xx
bursts, PostHog/Segment/Mailchimp/Google Calendar 429/5xx/dropped-connection bursts, SMTP
refusing for 8 s, three workers killed mid-event, the warehouse export and the MySQL
mirror on their own clock; then one replay and the checks against the generator's
independent ground truth (bench/soak.py; `make soak` runs the full 20,000-delivery version).
"""
from collections import Counter

import pytest

from bench.soak import Settings, run
from local_runner.simulate import simulate, to_major

SHORT = Settings(customers=110, smtp_outage_s=8.0, hubspot_period_s=5.0, hubspot_burst_s=1.0, kills=3,
                 dest_period_s=4.0, dest_burst_s=1.0, batch_period_s=5.0, deadline_s=300.0, report=None)


@pytest.fixture(scope="module")
def report():
    return run(SHORT, out=lambda *_: None)


def test_generator_is_seeded_and_reproducible():
    a, b = simulate(3, 40), simulate(3, 40)
    assert [e.body for e in a.events] == [e.body for e in b.events]
    assert [e.webhook_id for e in a.deliveries()] == [e.webhook_id for e in b.deliveries()]
    assert [e.body for e in simulate(4, 40).events] != [e.body for e in a.events]


def test_generator_covers_every_family_and_currency():
    sim = simulate(7, 300)
    families = {e.type.split(".")[0] for e in sim.events}
    assert families >= {"payment", "refund", "dispute", "subscription", "license_key", "payout", "credit",
                        "abandoned_checkout", "dunning", "entitlement_grant"}
    types = {e.type for e in sim.events}
    assert {"subscription.renewed", "subscription.plan_changed", "subscription.on_hold",
            "subscription.cancelled"} <= types
    assert {e.data.get("currency") for e in sim.events} >= {"USD", "JPY", "KWD"}
    deliveries = sim.deliveries(0.3, 40)
    assert abs((len(deliveries) - len(sim.events)) / len(deliveries) - 0.3) < 0.01


def test_ground_truth_money_uses_true_decimals():
    assert (to_major(120000, "JPY"), to_major(12500, "KWD"), to_major(2900, "USD")) == ("120000", "12.500", "29.00")
    assert to_major(-5, "USD") == "-0.05"


def test_every_delivery_sent_and_in_the_inbox(report):
    assert report["deliveries_sent"] >= 1500 and report["drained"]
    assert report["duplicates_sent"] > 0.25 * report["deliveries_sent"]
    assert report["lost"] == 0 and report["inbox"]["missing"] == 0
    assert report["inbox"]["wrong_status"] == 0 and report["inbox"]["unexpected"] == 0


def test_postgres_state_equals_the_ground_truth(report):
    assert report["examples"]["state_diffs"] == []


def test_the_faults_were_injected(report):
    f = report["faults"]
    assert len(f["postgres_restarts"]) == 2
    assert f["smtp_refusals"] > 0
    assert f["hubspot_errors"].get("429", 0) > 0 and f["hubspot_errors"].get("5xx", 0) > 0
    assert sum(f["workers_killed"].values()) == 3
    kinds = {k.split()[1] for k in f["destination_faults"]}
    assert kinds == {"429", "5xx", "5xx-after", "drop", "drop-after"}, f["destination_faults"]
    assert {k.split()[0] for k in f["destination_faults"]} >= {"posthog", "segment", "mailchimp"}


def test_each_destination_exactly_once_under_faults(report):
    """PostHog and Segment hold each event once after their own dedupe (uuid / messageId),
    the Mailchimp audience each customer once with the final state's tags, the calendar
    one live event per live subscription on its next billing date; nothing lost."""
    d = report["destinations"]
    for name in ("posthog", "segment_track", "segment_identify", "mailchimp", "gcal"):
        assert d[name]["expected"] > 0 and d[name]["got"] == d[name]["expected"], (name, d[name])
        assert (d[name]["lost"], d[name]["doubles"], d[name]["unexpected"]) == (0, 0, 0), (name, d[name])
    assert d["mailchimp"]["wrong_tags"] == 0 and d["gcal"]["wrong_date"] == 0 and d["gcal"]["unattributed"] == 0
    assert d["bad_requests"] == 0


def test_the_scheduled_sinks_match_postgres(report):
    """The warehouse export and the MySQL mirror ran through the Postgres restarts; at the
    end the Parquet files hold each inbox row once and MySQL each mirrored delivery once,
    with Postgres's rows."""
    sinks = report["scheduled_sinks"]
    assert sinks["runs"] >= 3
    wh, my = sinks["warehouse"], sinks["mysql"]
    assert wh["rows"] == wh["inbox_rows"] == report["inbox"]["rows"] and wh["files"] > 0
    assert (wh["missing"], wh["doubled"], wh["unexpected"]) == (0, 0, 0)
    assert my["deliveries"] == my["expected"] > 0
    assert (my["missing"], my["doubled"], my["unexpected"], my["row_diffs"]) == (0, 0, 0, 0)


def test_no_unexpected_message_reached_any_stand_in(report):
    assert report["notifications"]["unexpected"] == 0 and report["notifications"]["unattributed"] == 0
    assert report["crm"]["contacts_unexpected"] == 0 and report["crm"]["notes_unexpected"] == 0
    assert report["crm"]["notes_duplicated"] == 0
    assert report["crm"]["contacts_wrong_id"] == 0 and report["crm"]["bad_requests"] == 0


def test_each_notification_and_crm_entry_exactly_once(report):
    """Neither a worker killed after the record step committed (the restarted step is the same
    delivery attempt and answers "recorded": tests/test_record_restart.py) nor a Postgres
    restart after a provider accepted (the ledger's lease) loses or repeats a side effect."""
    assert report["duplicate_side_effects"] == 0
    assert report["lost_side_effects"] == 0
    assert report["ok"]


def test_the_soak_stand_ins_take_the_bundles_requests_and_refuse_malformed_ones():
    """The soak counts what its stand-ins refuse (bad_requests must stay 0): they check
    method, auth and body shape, so a malformed send cannot pass as delivered."""
    import httpx

    from bench.soak_standins import SLACK_TOKEN, TWILIO_SID, TWILIO_TOKEN, HttpStandIns
    from f.dodo.lib import channels

    http = HttpStandIns()
    try:
        twilio = {"accountSid": TWILIO_SID, "token": TWILIO_TOKEN, "from_number": "+15550009999"}
        channels.send_sms(twilio, to="+15551234567", body="[msg_ok1] hi", api_url=http.url)
        channels.send_slack({"text": "[msg_ok2] hi", "blocks": [{"type": "section"}]}, token=SLACK_TOKEN,
                            channel="#x", api_url=f"{http.url}/api")
        assert (http.sms["msg_ok1"], http.slack["msg_ok2"], http.bad_requests) == (1, 1, [])
        sms = f"{http.url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        form = {"To": "+15551234567", "From": "+15550009999", "Body": "[msg_bad] x"}
        refused = [
            httpx.post(sms, auth=(TWILIO_SID, "wrong"), data=form),
            httpx.post(sms, data=form),
            httpx.post(sms, auth=(TWILIO_SID, TWILIO_TOKEN), json=form),
            httpx.post(sms, auth=(TWILIO_SID, TWILIO_TOKEN), data={**form, "From": None}),
            httpx.get(sms, auth=(TWILIO_SID, TWILIO_TOKEN)),
            httpx.post(f"{http.url}/api/chat.postMessage", json={"text": "[msg_bad] x"},
                       headers={"Authorization": f"Bearer {SLACK_TOKEN}"}),
            httpx.post(f"{http.url}/api/chat.postMessage", json={"channel": "#x", "text": "[msg_bad] x", "blocks": []},
                       headers={"Authorization": "Bearer xoxb-other"}),
            httpx.post(f"{http.url}/api/other", json={}),
        ]
        assert [r.status_code for r in refused] == [400] * len(refused)
        assert len(http.bad_requests) == len(refused) and "msg_bad" not in http.sms | http.slack
    finally:
        http.close()


def test_the_destination_stand_ins_keep_state_as_the_providers_and_refuse_malformed_requests():
    """The soak's and the demo's PostHog, Segment, Mailchimp and Calendar stand-ins: the
    bundle's own requests pass and land once per dedupe key; a malformed one is refused and
    counted; a fault before the write leaves nothing, one after it leaves the write."""
    import httpx

    from f.dodo.lib import analytics, campaigns, gcalendar
    from local_runner.destination_standins import DestinationStandIns

    faults = []
    dests = DestinationStandIns(fault=lambda: faults.pop(0) if faults else None)
    try:
        res = dests.resources()
        event = {"event_type": "payment.succeeded", "customer_id": "cus_1", "customer_email": "Ana@Example.com",
                 "customer_name": "Ana Souza", "occurred_at": "2026-03-02T10:15:00.120000Z", "amount_minor": 1000,
                 "currency": "JPY", "category": "payment", "webhook_id": "msg_1"}
        faults[:] = ["drop-after"]  # the write lands, its answer is lost: sent again
        analytics.send_posthog(res["posthog"], event, "msg_1", sleep=lambda s: None)
        faults[:] = ["5xx-after"]
        analytics.send_segment(res["segment"], event, "msg_1", sleep=lambda s: None)
        assert len(dests.posthog) == 1 and dests.requests["posthog"] == 2  # one event, two requests
        assert sorted(c for c, _ in dests.segment.values()) == ["identify", "track"]
        faults[:] = ["429", "drop"]  # nothing lands, then it does
        campaigns.send(res["mailchimp"], event, "msg_1", sleep=lambda s: None)
        (member,) = dests.members.values()
        assert member["email_address"] == "Ana@Example.com" and member["tags"] == {"dodo-customer"}
        assert dests.faults == Counter({"posthog drop-after": 1, "segment 5xx-after": 1, "mailchimp 429": 1,
                                        "mailchimp drop": 1})
        sub = {"event_type": "subscription.active", "category": "subscription", "subscription_id": "sub_1",
               "customer_name": "Ana", "data": {"status": "active", "next_billing_date": "2026-04-02T00:00:00Z"}}
        gcalendar.send(res["gcal"], sub, "msg_2", sleep=lambda s: None)
        gcalendar.send(res["gcal"], dict(sub, data={"status": "cancelled"}), "msg_3", sleep=lambda s: None)
        (eid,) = [k for k, v in dests.calendar.items() if v["summary"].startswith("Renewal")]
        assert dests.calendar[eid]["status"] == "cancelled" and dests.live_events() == {}
        url = dests.url
        refused = [
            httpx.post(f"{url}/i/v0/e/", json={"api_key": "phc_other", "event": "x", "distinct_id": "d"}),
            httpx.post(f"{url}/v1/track", json={"userId": "u", "event": "x", "messageId": "m",
                                                "timestamp": "2026-03-02T10:15:00Z"}),  # no auth
            httpx.put(f"{url}/3.0/lists/{res['mailchimp']['list_id']}/members/{'0' * 32}",
                      auth=("x", res["mailchimp"]["api_key"]), json={"email_address": "a@b.c",
                                                                      "status_if_new": "subscribed"}),  # wrong hash
            httpx.post(f"{url}/calendar/v3/calendars/primary/events", headers={"Authorization": "Bearer nope"},
                       json={"id": "abcde", "summary": "x", "start": {"date": "2026-01-01"},
                             "end": {"date": "2026-01-02"}}),
            httpx.get(f"{url}/elsewhere"),
        ]
        assert [r.status_code for r in refused] == [400] * len(refused)
        assert len(dests.bad_requests) == len(refused)
        assert httpx.post(f"{url}/calendar/v3/calendars/primary/events", headers={
            "Authorization": f"Bearer {res['gcal']['token']}"}, json={
            "id": eid, "summary": "again", "start": {"date": "2026-01-01"}, "end": {"date": "2026-01-02"}}
        ).status_code == 409  # a deleted event's id stays taken, as in Google Calendar
    finally:
        dests.close()
