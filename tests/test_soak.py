"""The soak, short: ~1,500 signed deliveries of generated lifecycles through two local
server processes, 30 % redeliveries, reordering, Postgres restarted twice, HubSpot 429/5xx
bursts, SMTP refusing for 8 s, three workers killed mid-event; then one replay and the
checks against the generator's independent ground truth (bench/soak.py; `make soak` runs
the full 20,000-delivery version).
"""
import pytest

from bench.soak import Settings, run
from local_runner.simulate import simulate, to_major

SHORT = Settings(customers=110, smtp_outage_s=8.0, hubspot_period_s=5.0, hubspot_burst_s=1.0, kills=3,
                 deadline_s=300.0, report=None)


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
