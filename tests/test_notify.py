"""Notifications through real local servers: pytest-httpserver stand-ins of Slack and
Twilio (checked against their API docs) and an aiosmtpd SMTP server on loopback."""

import base64
import email
import functools
import email.policy
import json
import socket
import uuid
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from werkzeug import Response

from f.dodo.lib import channels, db, ledger, render, routing
from f.dodo.lib.notify import NotifyError, Transports, notify, plan
from tests.standin_checks import slack_post_message, twilio_message

SLACK_TOKEN = "xoxb-test-token"
TWILIO = {"accountSid": "AC0123456789abcdef0123456789abcdef", "token": "twilio-secret",
          "from_number": "+15550001111"}

INJECT = "<!channel> @here @everyone <@U123> <https://evil.example|click> & *x* \r\nBcc: victim@example.com\x1b[31m\u202e"


def event(**over):
    e = {"event_type": "dispute.opened", "category": "dispute", "webhook_id": f"msg_{uuid.uuid4().hex[:8]}",
         "occurred_at": "2026-01-02T03:04:05Z", "customer_id": INJECT, "customer_email": INJECT,
         "customer_name": INJECT, "amount": "1.234", "amount_minor": 1234, "currency": "KWD",
         "status": INJECT, "entity_id": "dp_1", "dispute_id": "dp_1",
         "data": {"remarks": INJECT + "<script>alert(1)</script>", "metadata": {INJECT: INJECT}}}
    return e | over


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, {"host": "127.0.0.1", "port": port, "user": "", "password": ""}
    controller.stop()


def slack_ok(request):
    assert request.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    body = request.get_json()
    assert set(body) == {"channel", "text", "blocks"} and body["channel"] == "#payments"
    assert all(b["type"] in {"section", "context"} for b in body["blocks"])
    return Response(json.dumps({"ok": True, "channel": "C123", "ts": "1700000000.000100"}),
                    content_type="application/json")


def slack_texts(body: dict) -> list[str]:
    out = [body["text"]]
    for block in body["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])] + [e["text"] for e in block.get("elements", [])]
    return out


def assert_slack_inert(body: dict):
    for text in slack_texts(body):
        assert "<!" not in text and "<@" not in text and "<http" not in text
        for mention in ("@here", "@channel", "@everyone"):
            assert mention not in text.lower()
        assert "\r" not in text and "\x1b" not in text and "\u202e" not in text
    assert any("&lt;!channel&gt;" in t for t in slack_texts(body))


# --- Slack ---------------------------------------------------------------------------


def test_slack_chat_post_message_with_block_kit(httpserver):
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(slack_ok)
    msg = render.slack_message(event(), urgency="urgent")
    ts = channels.send_slack(msg, token=SLACK_TOKEN, channel="#payments", api_url=httpserver.url_for("/api"))
    assert ts == "1700000000.000100"
    body = httpserver.log[0][0].get_json()
    assert body["text"].startswith(":rotating_light: URGENT: Dispute opened")
    assert "1.234 KWD" in body["text"]
    assert_slack_inert(body)


def test_slack_incoming_webhook(httpserver):
    httpserver.expect_request("/services/T000/B000/XXXX", method="POST").respond_with_data("ok")
    channels.send_slack({"text": "hi", "blocks": []}, webhook_url=httpserver.url_for("/services/T000/B000/XXXX"))
    request = httpserver.log[0][0]
    assert request.headers["Content-Type"] == "application/json"
    assert request.get_json() == {"text": "hi", "blocks": []}


def test_slack_api_error_fails_without_retry(httpserver):
    def not_found(request):
        slack_post_message(request, SLACK_TOKEN, channel="#nope")
        return Response(json.dumps({"ok": False, "error": "channel_not_found"}), content_type="application/json")

    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(not_found)
    with pytest.raises(channels.DeliveryError, match="channel_not_found"):
        channels.send_slack({"text": "x", "blocks": []}, token=SLACK_TOKEN, channel="#nope",
                            api_url=httpserver.url_for("/api"), sleep=lambda s: None)
    assert len(httpserver.log) == 1


def test_slack_error_never_contains_the_webhook_url(httpserver):
    httpserver.expect_request("/services/T/B/secret-part").respond_with_data("no_service", status=404)
    with pytest.raises(channels.DeliveryError) as info:
        channels.send_slack({"text": "x"}, webhook_url=httpserver.url_for("/services/T/B/secret-part"))
    assert "secret-part" not in str(info.value) and "404" in str(info.value)


# --- Email ---------------------------------------------------------------------------


def test_smtp_email_text_and_html_inert(smtp_server):
    inbox, smtp = smtp_server
    msg = render.email_message(event(), urgency="urgent")
    channels.send_email(smtp, sender="alerts@shop.example", to=["ops@shop.example"],
                        message_id="<msg_1@dodo-bundle>", **msg)
    (mail_from, rcpts, raw), = inbox.messages
    assert mail_from == "alerts@shop.example" and rcpts == ["ops@shop.example"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and "victim" not in str(parsed["To"])
    assert parsed["Subject"].startswith("[URGENT] [Dodo] Dispute opened")
    assert parsed["Message-ID"] == "<msg_1@dodo-bundle>"
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "1.234 KWD" in text and "\x1b" not in text and "\r\nBcc" not in text
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;!channel&gt;" in html
    header_block = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert not any(line.lower().startswith("bcc:") for line in header_block.splitlines())


def test_subject_from_customer_text_stays_one_line():
    subject = render.email_message(event(), title="$title for $customer_name")["subject"]
    assert "\r" not in subject and "\n" not in subject and "\x1b" not in subject


# --- SMS ----------------------------------------------------------------------------


def test_twilio_messages_api(httpserver):
    def handler(request):
        expected = base64.b64encode(f"{TWILIO['accountSid']}:{TWILIO['token']}".encode()).decode()
        assert request.headers["Authorization"] == f"Basic {expected}"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = parse_qs(request.get_data(as_text=True))
        assert set(form) == {"To", "From", "Body"} and form["From"] == ["+15550001111"]
        body = form["Body"][0]
        assert not any(c in body for c in "\r\n\x1b\u202e") and body.startswith("URGENT Dispute opened")
        return Response(json.dumps({"sid": "SM" + "0" * 32, "status": "queued"}), status=201,
                        content_type="application/json")

    path = f"/2010-04-01/Accounts/{TWILIO['accountSid']}/Messages.json"
    httpserver.expect_request(path, method="POST").respond_with_handler(handler)
    sid = channels.send_sms(TWILIO, to="+15557654321", body=render.sms_message(event(), urgency="urgent"),
                            api_url=httpserver.url_for(""))
    assert sid == "SM" + "0" * 32


def test_twilio_error_carries_its_code(httpserver):
    path = f"/2010-04-01/Accounts/{TWILIO['accountSid']}/Messages.json"
    def invalid_to(request):
        twilio_message(request, TWILIO["accountSid"], TWILIO["token"])
        return Response(json.dumps({"code": 21211, "message": "The 'To' number is not a valid phone number.",
                                    "status": 400}), status=400, content_type="application/json")

    httpserver.expect_request(path, method="POST").respond_with_handler(invalid_to)
    with pytest.raises(channels.DeliveryError, match="21211"):
        channels.send_sms(TWILIO, to="+15557654321", body="x", api_url=httpserver.url_for(""))


# --- Routing ------------------------------------------------------------------------


def test_default_routes():
    r = routing.load(None)
    assert [(c, rule.urgency) for c, rule in plan(event(), r)] == [("slack", "urgent"), ("email", "urgent")]
    assert [c for c, _ in plan(event(event_type="payment.succeeded"), r)] == ["digest"]
    assert [c for c, _ in plan(event(event_type="payment.failed"), r)] == ["slack"]
    assert [c for c, _ in plan(event(event_type="subscription.on_hold"), r)] == ["slack"]
    assert [c for c, _ in plan(event(event_type="dispute.won"), r)] == ["slack"]
    assert plan(event(event_type="payout.success"), r) == []


def test_custom_rules_with_wildcard_and_sms():
    r = routing.load(json.dumps({"sms_to": ["+15557654321"], "rules": [
        {"match": "subscription.*", "channels": ["sms", "slack"], "slack_channel": "#subs"}]}))
    assert [c for c, _ in plan(event(event_type="subscription.paused"), r)] == ["sms:+15557654321", "slack"]


def test_invalid_routing_names_what_is_wrong():
    with pytest.raises(routing.RoutingError, match=r"routing\.rules\[0\]\.channels\[0\]"):
        routing.load({"rules": [{"match": "x", "channels": ["pager"]}]})
    with pytest.raises(routing.RoutingError, match=r"routing\.rules\[0\]\.email_to.*not an email"):
        routing.load({"rules": [{"match": "x", "email_to": ["ops@x.com\r\nBcc: y@z.com"]}]})
    with pytest.raises(routing.RoutingError, match="not valid JSON"):
        routing.load("{")


# --- End to end with the ledger ------------------------------------------------------


@pytest.fixture
def db_conn(pg_url):
    schema = f"notify_{uuid.uuid4().hex[:8]}"
    with db.connect(pg_url, schema, migrate=True) as c:
        yield c
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_slack_down_for_the_whole_window_then_replay_sends_once(httpserver, smtp_server, db_conn):
    inbox, smtp = smtp_server
    rules = routing.load({"email_to": ["ops@shop.example"], "rules": routing.DEFAULT_RULES})
    # Slack unreachable (connection refused: provably not sent, so retried) for the whole window.
    t = Transports(slack={"token": SLACK_TOKEN}, smtp=smtp, slack_api=f"http://127.0.0.1:{free_port()}/api",
                   sleep=lambda s: None)
    ev = event()
    with pytest.raises(NotifyError, match="slack"):
        notify(db_conn, ev, rules, t)
    got = {r["channel"]: r for r in ledger.rows(db_conn, ev["webhook_id"])}
    assert got["slack"]["status"] == "failed" and "ConnectError after 4 attempts" in got["slack"]["last_error"]
    assert got["email"]["status"] == "sent" and len(inbox.messages) == 1

    t.slack_api = httpserver.url_for("/api")
    httpserver.expect_request("/api/chat.postMessage").respond_with_handler(slack_ok)
    result = notify(db_conn, ev, rules, t)
    assert result["channels"]["slack"]["status"] == "sent"
    assert result["channels"]["email"]["replayed"] is True
    notify(db_conn, ev, rules, t)
    assert len(httpserver.log) == 1 and len(inbox.messages) == 1
    assert_slack_inert(httpserver.log[0][0].get_json())


def hold_lease(conn, webhook_id: str, sink: str, channel: str) -> None:
    """Another worker claimed this delivery and is still sending it (its lease is live)."""
    conn.execute("INSERT INTO delivery_ledger (webhook_id, sink, channel, status, attempts, claim, claimed_at, "
                 "lease_until) VALUES (%s, %s, %s, 'sending', 1, 'another-worker', now(), "
                 "now() + interval '1 hour')", (webhook_id, sink, channel))


def test_a_channel_in_progress_elsewhere_fails_the_step_and_the_retry_sends_the_rest_once(
        httpserver, smtp_server, db_conn, monkeypatch):
    monkeypatch.setattr(ledger, "deliver_once", functools.partial(ledger.deliver_once, wait=0))
    inbox, smtp = smtp_server
    rules = routing.load({"email_to": ["ops@shop.example"], "rules": routing.DEFAULT_RULES})
    t = Transports(slack={"token": SLACK_TOKEN}, smtp=smtp, slack_api=httpserver.url_for("/api"))
    httpserver.expect_request("/api/chat.postMessage").respond_with_handler(slack_ok)
    ev = event()
    hold_lease(db_conn, ev["webhook_id"], "notify", "slack")
    with pytest.raises(NotifyError, match=r"^slack: in progress in another worker .*retry later$"):
        notify(db_conn, ev, rules, t)
    assert httpserver.log == [] and len(inbox.messages) == 1  # the other channel was delivered

    db_conn.execute("UPDATE delivery_ledger SET status = 'sent', claim = NULL, lease_until = NULL "
                    "WHERE webhook_id = %s AND channel = 'slack'", (ev["webhook_id"],))  # the other worker ends
    result = notify(db_conn, ev, rules, t)  # Windmill's retry of the step
    assert {c: r["status"] for c, r in result["channels"].items()} == {"slack": "sent", "email": "sent"}
    assert httpserver.log == [] and len(inbox.messages) == 1


def test_unconfigured_channels_go_to_the_outbox(outbox, db_conn):
    rules = routing.load({"email_to": ["ops@shop.example"], "sms_to": ["+15557654321"], "rules": [
        {"match": "dispute.*", "channels": ["slack", "email", "sms"]}]})
    ev = event()
    result = notify(db_conn, ev, rules, Transports())
    assert {c: r["status"] for c, r in result["channels"].items()} == {
        "slack": "skipped", "email": "skipped", "sms:+15557654321": "skipped"}
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["slack", "email", "sms"]
    assert all(line["delivery"] == ev["webhook_id"] for line in lines)
    notify(db_conn, ev, rules, Transports())  # a replay writes nothing new
    assert len(outbox.read_text().splitlines()) == 3


def test_digest_mode_queues_instead_of_sending(db_conn):
    ev = event(event_type="payment.succeeded", category="payment", amount_minor=1000, currency="JPY")
    result = notify(db_conn, ev, routing.load(None), Transports(slack={"token": SLACK_TOKEN}))
    assert result["channels"] == {"digest": {"status": "pending"}}
    (row,) = ledger.pending(db_conn, "notify", "digest")
    assert "1000 JPY" in row["detail"]["line"]



def test_routing_variable_file_holds_the_defaults():
    import yaml

    text = yaml.safe_load(open("f/dodo/notify_routing.variable.yaml"))["value"]
    assert routing.load(text) == routing.load(None)


def test_send_entry_script_with_variable_and_resources(httpserver, smtp_server, monkeypatch, pg_url):
    from f.dodo.notify import send

    inbox, smtp = smtp_server
    monkeypatch.setenv("DODO_SLACK_API_URL", httpserver.url_for("/api"))
    httpserver.expect_request("/api/chat.postMessage").respond_with_handler(slack_ok)
    rules = json.dumps({"email_to": ["ops@shop.example"], "rules": routing.DEFAULT_RULES})
    schema = f"send_{uuid.uuid4().hex[:8]}"
    db.connect(pg_url, schema, migrate=True).close()  # the owner's step (f/dodo/migrate)
    ev = event()
    pg = db.dsn_to_resource(pg_url)
    result = send.main(ev, rules, {"token": SLACK_TOKEN}, smtp, None, pg, None, schema)
    again = send.main(ev, rules, {"token": SLACK_TOKEN}, smtp, None, pg, None, schema)
    assert {c: r["status"] for c, r in result["channels"].items()} == {"slack": "sent", "email": "sent"}
    assert all(r["replayed"] for r in again["channels"].values())
    assert len(httpserver.log) == 1 and len(inbox.messages) == 1
    with db.connect(pg_url, schema) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_send_rejects_bad_routing_before_sending(httpserver):
    from f.dodo.notify import send

    with pytest.raises(routing.RoutingError, match=r"routing\.rules\[0\]\.urgency"):
        send.main(event(), json.dumps({"rules": [{"match": "*", "urgency": "panic"}]}))
    assert len(httpserver.log) == 0


def test_daily_digest_sends_queued_lines_once(httpserver, db_conn):
    rules = routing.load(None)
    t = Transports(slack={"token": SLACK_TOKEN}, slack_api=httpserver.url_for("/api"), sleep=lambda s: None)
    for i, name in enumerate(["Ada", "<!channel> Eve"]):
        notify(db_conn, event(event_type="payment.succeeded", category="payment", webhook_id=f"d{i}",
                              customer_name=name, amount_minor=1000, currency="JPY"), rules, t)
    assert len(httpserver.log) == 0  # digest mode: nothing sent at event time
    httpserver.expect_request("/api/chat.postMessage").respond_with_handler(slack_ok)
    from f.dodo.lib.notify import send_digest
    sent = send_digest(db_conn, rules, t)
    assert sent["status"] == "sent" and sent["events"] == 2
    body = httpserver.log[0][0].get_json()
    assert "1000 JPY" in body["blocks"][1]["text"]["text"] and "2 events" in body["text"]
    assert_slack_inert(body)
    assert send_digest(db_conn, rules, t)["status"] == "empty" and len(httpserver.log) == 1
