"""Slack, Twilio and SMTP as their documentation defines them (issue 15): Slack's Block
Kit limits and invalid_blocks, no second Slack message or SMS when a send's outcome is
unknown, e-mail Message-IDs, refused recipients and no cleartext login, and Slack
incoming webhooks that cannot choose a channel. Stand-ins: tests/provider_standins.py."""

from __future__ import annotations

import email
import email.policy
import re
import struct
import time
import uuid
from datetime import date
from decimal import Decimal

import pytest
from werkzeug import Response

from f.dodo.lib import channels, db, ledger, render, reports, routing, svgchart
from f.dodo.lib.money import EXPONENTS
from f.dodo.lib.notify import NotifyError, Transports, notify, send_digest
from tests.provider_standins import (SLACK_TOKEN, TWILIO, SlackApi, SmtpServer, TwilioApi, block_errors, free_port,
                                     tls_contexts)


@pytest.fixture
def conn(pg_url):
    schema = f"prov_{uuid.uuid4().hex[:8]}"
    with db.connect(pg_url, schema, migrate=True) as c:
        yield c
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def slack(httpserver):
    return SlackApi(httpserver)


@pytest.fixture
def twilio(httpserver):
    return TwilioApi(httpserver)


def event(**over) -> dict:
    e = {"event_type": "dispute.opened", "category": "dispute", "webhook_id": f"msg_{uuid.uuid4().hex[:8]}",
         "occurred_at": "2026-01-02T03:04:05Z", "customer_id": "cus_1", "customer_email": "ada@example.com",
         "customer_name": "Ada", "amount": "1.234", "amount_minor": 1234, "currency": "KWD",
         "status": "dispute_opened", "entity_id": "dp_1", "dispute_id": "dp_1", "data": {}}
    return e | over


SLACK_ONLY = {"rules": [{"match": "*", "channels": ["slack"]}]}
ENTITY = re.compile(r"&(amp|lt|gt);")


def no_broken_entity(text: str) -> bool:
    """Every & starts a whole entity (Slack escapes & < > and shows a cut one as text)."""
    return all(ENTITY.match(text, m.start()) for m in re.finditer("&", text))


# --- 3. Slack limits ---------------------------------------------------------------------


def test_the_stand_in_refuses_an_overlong_section_as_slack_does(slack):
    msg = {"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
    with pytest.raises(channels.DeliveryError, match=r"invalid_blocks \(must be less than 3001 characters"):
        channels.send_slack(msg, token=SLACK_TOKEN, channel="#payments", api_url=slack.url)
    assert slack.posted == []


@pytest.mark.parametrize("offset", range(5))
def test_slack_cut_never_splits_an_entity(offset):
    text = "x" * offset + "&amp;" * 1000
    cut = render.slack_cut(text)
    assert len(cut) <= render.SECTION_MAX and cut.endswith("…") and no_broken_entity(cut[:-1])


def test_customer_text_that_grows_fivefold_when_escaped_still_fits_a_section(conn, slack):
    """Four customer fields of 300 `&` (1,500 characters each once escaped) in a custom
    summary made a 6,000-character section that Slack refused whole (invalid_blocks)."""
    amp = "&" * 300
    rules = routing.load({"rules": [{"match": "*", "channels": ["slack"],
                                     "summary": "$customer_name $customer_email $status $reason"}]})
    ev = event(customer_name=amp, customer_email=amp, status=amp, data={"reason": amp, "metadata": {amp: amp}})
    result = notify(conn, ev, rules, Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url))
    assert result["channels"]["slack"]["status"] == "sent"
    (body,) = slack.posted
    assert block_errors(body["blocks"]) == []
    section = body["blocks"][0]["text"]["text"]
    assert render.SECTION_MAX - 5 < len(section) <= render.SECTION_MAX and section.endswith("…")
    assert no_broken_entity(section[:-1])
    assert all(no_broken_entity(f["text"]) for f in body["blocks"][1]["fields"])


def report_with(currencies: list[str]) -> reports.Report:
    revenue = {c: {"payments": 1, "gross": 123456789, "refunds": 0, "disputes_lost": 0, "net": 123456789}
               for c in currencies}
    return reports.Report(day=date(2026, 3, 1), revenue=revenue, mrr={c: Decimal(1000) for c in currencies},
                          mrr_before={}, new_subscriptions=1, churned_subscriptions=0, refunds={},
                          open_disputes={})


def test_revenue_report_holds_every_currency_within_slacks_limits(conn, slack):
    currencies = sorted(EXPONENTS)  # all 145 Dodo currencies on one day
    r = report_with(currencies)
    results = reports.send(conn, r, slack={"token": SLACK_TOKEN}, slack_api=slack.url)
    assert results["slack"]["status"] == "sent"
    (body,) = slack.posted
    assert block_errors(body["blocks"]) == [] and len(body["blocks"]) > 2
    table = "\n".join(b["text"]["text"] for b in body["blocks"][1:])
    listed = [line.split()[0] for line in table.splitlines() if line and not line.startswith(("```", "Currency"))]
    assert listed == currencies
    assert "1234567.89" in table and "123456789" in table  # USD and JPY (zero decimals), exact
    (chart,) = slack.files  # the chart, shared in the report's thread as a PNG (Slack previews PNG)
    assert results["slack_chart"]["status"] == "sent" and chart["filename"].endswith(".png")
    assert chart["bytes"] == svgchart.png(reports.chart_svg(r))
    width, height = struct.unpack(">II", chart["bytes"][16:24])  # IHDR: drawn smaller, not without bound
    assert width * height <= svgchart.PNG_MAX_PIXELS and width >= 250
    assert chart["share"]["channel_id"] == "C0123456789" and chart["share"]["thread_ts"] == "1700000000.000001"


def queue_digest(conn, n: int, size: int) -> list[str]:
    ids = [f"dg_{i:03d}" for i in range(n)]
    for i, w in enumerate(ids):
        ledger.enqueue(conn, w, "notify", "digest", {"line": f"line {i:03d} " + "&" * size})
    return ids


def digest_lines(posted: list[dict]) -> list[str]:
    return [line for body in posted for b in body["blocks"][1:] for line in b["text"]["text"].split("\n")]


def test_digest_sends_every_line_and_marks_only_what_it_sent(conn, slack):
    ids = queue_digest(conn, 120, 600)  # 120 lines of 3,000 escaped characters: a section each, 3 messages
    rules = routing.load(None)
    t = Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url, sleep=lambda s: None)
    slack.queue = [Response('{"ok": false, "error": "channel_not_found"}', content_type="application/json")]
    # The first message is refused: nothing is marked, everything stays queued.
    with pytest.raises(channels.DeliveryError, match="channel_not_found"):
        send_digest(conn, rules, t)
    assert len(ledger.pending(conn, "notify", "digest")) == 120
    sent = send_digest(conn, rules, t)
    assert sent["status"] == "sent" and sent["events"] == 120 and sent["messages"] == len(slack.posted) > 1
    assert all(block_errors(body["blocks"]) == [] for body in slack.posted)
    lines = digest_lines(slack.posted)
    assert [line.split()[2] for line in lines] == [f"{i:03d}" for i in range(120)]  # each once, in order
    statuses = conn.execute("SELECT DISTINCT status FROM delivery_ledger WHERE webhook_id = ANY(%s)", (ids,)).fetchall()
    assert statuses == [("sent",)]


def test_a_digest_message_that_fails_leaves_its_lines_pending(conn, slack):
    ids = queue_digest(conn, 120, 600)
    rules = routing.load(None)
    t = Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url, sleep=lambda s: None)
    real = channels.send_slack
    calls = []

    def second_refused(msg, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise channels.DeliveryError("Slack chat.postMessage: HTTP 200 channel_not_found")
        return real(msg, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(channels, "send_slack", second_refused)
        with pytest.raises(channels.DeliveryError):
            send_digest(conn, rules, t)
    carried = {f"dg_{int(line.split()[2]):03d}" for line in digest_lines(slack.posted)}
    pending = {r["webhook_id"] for r in ledger.pending(conn, "notify", "digest")}
    assert carried and pending and carried | pending == set(ids) and not carried & pending
    sent = {w for (w,) in conn.execute("SELECT webhook_id FROM delivery_ledger WHERE status = 'sent'")}
    assert sent == carried  # only the lines the first message carried


# --- 4. No second Slack message or SMS ---------------------------------------------------


def test_slack_5xx_after_posting_is_unknown_reported_and_not_resent(conn, slack, capsys):
    t = Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url, sleep=lambda s: None)
    slack.queue = [Response('{"ok": false, "error": "fatal_error"}', status=503, content_type="application/json")]
    ev, rules = event(), routing.load(SLACK_ONLY)
    result = notify(conn, ev, rules, t)  # not raised: a step retry could not tell either
    assert result["channels"]["slack"]["status"] == "unknown" and "503" in result["unknown"]["slack"]
    assert len(slack.posted) == 1
    (row,) = ledger.rows(conn, ev["webhook_id"])
    assert row["status"] == "unknown" and "may have been delivered" in row["last_error"]
    assert f"WARNING delivery {ev['webhook_id']} slack: outcome unknown" in capsys.readouterr().err
    again = notify(conn, ev, rules, t)  # a replay
    assert again["channels"]["slack"]["status"] == "unknown" and len(slack.posted) == 1
    assert ledger.release_unknown(conn, [ev["webhook_id"]]) == 1  # replay's resend_unknown
    assert notify(conn, ev, rules, t)["channels"]["slack"]["status"] == "sent" and len(slack.posted) == 2


def test_a_slack_post_that_times_out_is_not_sent_again(conn, slack, httpserver, monkeypatch):
    def slow(request):
        slack.posted.append(request.get_json())
        time.sleep(1.0)  # answers after the client gave up
        return Response('{"ok": true, "ts": "1.1"}', content_type="application/json")

    httpserver.clear_all_handlers()
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(slow)
    monkeypatch.setattr(channels.http, "_shared", {15.0: channels.http.Client(timeout=0.3)})
    ev = event()
    result = notify(conn, ev, routing.load(SLACK_ONLY),
                    Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url, sleep=lambda s: None))
    assert result["channels"]["slack"]["status"] == "unknown" and "ReadTimeout" in result["unknown"]["slack"]
    assert len(slack.posted) == 1


def test_slack_429_is_retried_after_its_retry_after(conn, slack):
    sleeps = []
    slack.queue = [Response('{"ok": false, "error": "ratelimited"}', status=429, headers={"Retry-After": "3"},
                            content_type="application/json")]
    result = notify(conn, event(), routing.load(SLACK_ONLY),
                    Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url, sleep=sleeps.append))
    assert result["channels"]["slack"]["status"] == "sent" and sleeps == [3.0] and len(slack.posted) == 1


def test_slack_unreachable_is_retried_then_failed_and_a_replay_sends_once(conn, slack):
    rules, ev = routing.load(SLACK_ONLY), event()
    closed = f"http://127.0.0.1:{free_port()}/api"  # connection refused: provably not sent
    with pytest.raises(NotifyError, match="slack: .*ConnectError after 4 attempts"):
        notify(conn, ev, rules, Transports(slack={"token": SLACK_TOKEN}, slack_api=closed, sleep=lambda s: None))
    assert [r["status"] for r in ledger.rows(conn, ev["webhook_id"])] == ["failed"]
    t = Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url)
    assert notify(conn, ev, rules, t)["channels"]["slack"]["status"] == "sent"
    assert notify(conn, ev, rules, t)["channels"]["slack"]["replayed"] is True and len(slack.posted) == 1


SMS = {"sms_to": ["+15557654321"], "rules": [{"match": "*", "channels": ["sms"]}]}


def test_twilio_5xx_is_unknown_and_not_resent(conn, twilio):
    twilio.queue = [TwilioApi.error(20500, "An internal server error has occurred", 500)]
    ev, rules = event(), routing.load(SMS)
    t = Transports(twilio=TWILIO, twilio_api=twilio.url, sleep=lambda s: None)
    result = notify(conn, ev, rules, t)
    assert result["channels"]["sms:+15557654321"]["status"] == "unknown" and len(twilio.sent) == 1
    assert notify(conn, ev, rules, t)["channels"]["sms:+15557654321"]["status"] == "unknown"
    assert len(twilio.sent) == 1


def test_twilio_error_body_is_reported_whole(conn, twilio):
    twilio.queue = [TwilioApi.error(21211, "Invalid 'To' Phone Number: +1555765XXXX", 400)]
    ev = event()
    with pytest.raises(NotifyError, match=r"Twilio: HTTP 400 21211 Invalid 'To' Phone Number.*"
                                          r"\(https://www.twilio.com/docs/errors/21211\)"):
        notify(conn, ev, routing.load(SMS), Transports(twilio=TWILIO, twilio_api=twilio.url, sleep=lambda s: None))
    assert [r["status"] for r in ledger.rows(conn, ev["webhook_id"])] == ["failed"] and twilio.sent == []


# --- 5. E-mail ---------------------------------------------------------------------------

ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
MSG_ID = re.compile(rf"<{ATEXT}(\.{ATEXT})*@{ATEXT}(\.{ATEXT})*>")
KEYS = ["msg_2Xk9", "reconcile:payment:pay_1:0123456789abcdef", "reconcile:refund:rf_1:ab@1767323045",
        "payment.succeeded:pay_1", "dispute.opened:None", "revenue_report:2026-03-01", "a b\tc<d>\"e\\f",
        "ü:é", "a=3Ab", "a:b", "x" * 500, "x" * 499 + "y"]


def test_message_ids_are_rfc5322_and_distinct_for_every_key():
    ids = [channels.message_id(k) for k in KEYS]
    assert all(MSG_ID.fullmatch(i) for i in ids), [i for i in ids if not MSG_ID.fullmatch(i)]
    assert len(set(ids)) == len(KEYS) and all(len(i) < 250 for i in ids)
    assert channels.message_id("msg_2Xk9") == "<msg_2Xk9@dodo-bundle>"  # plain ids stay readable


def test_a_reconcile_events_email_carries_a_valid_message_id(conn):
    key = "reconcile:dispute:dp_1:0123456789abcdef@1767323045"
    rules = routing.load({"email_to": ["ops@shop.example"], "rules": [{"match": "*", "channels": ["email"]}]})
    with SmtpServer() as smtp:
        notify(conn, event(webhook_id=key), rules, Transports(smtp={"host": "127.0.0.1", "port": smtp.port}))
        (_, _, raw), = smtp.messages
    header = email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
    header, defects = str(header).strip(), header.defects
    assert MSG_ID.fullmatch(header) and header == channels.message_id(key)
    assert not defects


def test_a_recipient_the_server_refuses_is_reported(conn):
    rules = routing.load({"email_to": ["ops@shop.example", "gone@shop.example"],
                          "rules": [{"match": "*", "channels": ["email"]}]})
    ev = event()
    with SmtpServer(refuse={"gone@shop.example"}) as smtp:
        result = notify(conn, ev, rules, Transports(smtp={"host": "127.0.0.1", "port": smtp.port}))
        (_, rcpts, _), = smtp.messages
    assert rcpts == ["ops@shop.example"]
    mail = result["channels"]["email"]
    assert mail["status"] == "sent" and "gone@shop.example (550" in mail["error"]
    (row,) = ledger.rows(conn, ev["webhook_id"])
    assert row["status"] == "sent" and "refused by the SMTP server: gone@shop.example (550" in row["last_error"]


def test_no_password_in_cleartext_when_the_server_offers_no_starttls():
    with SmtpServer(auth=True) as smtp:
        resource = {"host": "127.0.0.1", "port": smtp.port, "user": "bundle", "password": "s3cret"}
        with pytest.raises(channels.DeliveryError, match=r"offers no STARTTLS.*cleartext.*`port` to 465") as info:
            channels.send_email(resource, sender="a@shop.example", to=["ops@shop.example"], subject="s",
                                text="t", html="<p>t</p>", message_id="<m@dodo-bundle>")
        assert smtp.logins == [] and smtp.messages == []
    assert "s3cret" not in str(info.value)


def test_a_login_goes_over_starttls_when_the_server_offers_it(monkeypatch):
    server_tls, client_tls = tls_contexts()
    monkeypatch.setattr(channels, "_tls", client_tls)
    with SmtpServer(auth=True, tls=server_tls) as smtp:
        resource = {"host": "127.0.0.1", "port": smtp.port, "user": "bundle", "password": "s3cret"}
        sent = channels.send_email(resource, sender="a@shop.example", to=["ops@shop.example"], subject="s",
                                   text="t", html="<p>t</p>", message_id="<m@dodo-bundle>")
        assert smtp.logins == ["PLAIN tls=True"] and len(smtp.messages) == 1
    assert sent == {"status": "sent", "external_id": "<m@dodo-bundle>"}


# --- 6. Slack incoming webhooks cannot choose a channel -------------------------------------


def test_webhook_mode_refuses_a_rule_that_names_a_channel(conn, httpserver):
    httpserver.expect_request("/services/T000/B000/XXXX", method="POST").respond_with_data("ok")
    url = httpserver.url_for("/services/T000/B000/XXXX")
    rules = routing.load({"rules": [{"match": "dispute.*", "channels": ["slack"], "slack_channel": "#disputes"}]})
    with pytest.raises(routing.RoutingError, match=r"routing\.rules\[0\]\.slack_channel: .*incoming webhook.*"
                                                   r"cannot send to '#disputes'"):
        notify(conn, event(), rules, Transports(slack_webhook_url=url))
    assert httpserver.log == []
    # Without a per-rule channel the webhook posts (to its own channel).
    result = notify(conn, event(), routing.load(SLACK_ONLY), Transports(slack_webhook_url=url))
    assert result["channels"]["slack"]["status"] == "sent" and len(httpserver.log) == 1
    # With a bot token the rule's channel is honoured.
    slack = SlackApi(httpserver, channel="#disputes")
    sent = notify(conn, event(), rules, Transports(slack={"token": SLACK_TOKEN}, slack_webhook_url=url,
                                                   slack_api=slack.url))
    assert sent["channels"]["slack"]["status"] == "sent" and len(slack.posted) == 1


def test_replay_resends_an_unknown_send_only_with_resend_unknown(conn, slack):
    """The event was processed (its step succeeded) with its Slack post of unknown outcome:
    a plain replay neither selects nor resends it; `resend_unknown` selects it, releases the
    send, and the re-run entry flow posts it again."""
    from f.dodo.lib import replay as rp
    from f.dodo.lib.normalizer import normalize_event
    from f.dodo.lib.store import record_delivery
    from tests.fixture_data import envelope

    body, webhook_id = envelope("dispute.opened"), f"msg_{uuid.uuid4().hex[:8]}"
    assert record_delivery(conn, body, webhook_id)["status"] == "recorded"
    conn.execute("UPDATE webhook_events SET status = 'processed' WHERE webhook_id = %s", (webhook_id,))
    t = Transports(slack={"token": SLACK_TOKEN}, slack_api=slack.url, sleep=lambda s: None)
    rules = routing.load(SLACK_ONLY)
    slack.queue = [Response("{}", status=502, content_type="application/json")]
    assert notify(conn, normalize_event(body, webhook_id), rules, t)["channels"]["slack"]["status"] == "unknown"

    def run(args):  # the entry flow's notify branch, as Windmill would run it for the replay
        return True, notify(conn, normalize_event(args["event"], args["webhook_id"]), rules, t), "job-1"

    plain = rp.Selection(webhook_ids=(webhook_id,), statuses=("failed", "received"))
    assert rp.select(conn, plain) == []
    forced = rp.select(conn, rp.Selection(webhook_ids=(webhook_id,), resend_unknown=True))
    assert [r["webhook_id"] for r in forced] == [webhook_id]
    assert rp.describe(conn, forced[0])["unknown"] == "notify/slack"
    rp.replay(conn, forced, run)  # without the flag: still unknown, nothing posted
    assert len(slack.posted) == 1 and [r["status"] for r in ledger.rows(conn, webhook_id)] == ["unknown"]
    (done,) = rp.replay(conn, forced, run, resend_unknown=True)
    assert len(slack.posted) == 2 and [r["status"] for r in ledger.rows(conn, webhook_id)] == ["sent"]
    assert done["sent_now"] == "notify/slack" and done["unknown"] == ""
