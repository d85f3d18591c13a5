"""The bundle's own SMTP session and message (f/dodo/lib/smtp_wire.py) against a real SMTP
server (aiosmtpd on loopback), each message read back with the standard library's
`email` parser as a mail client would: RFC 5322 headers, RFC 2047 encoded words, MIME
alternatives, implicit TLS and STARTTLS with the certificate checked, AUTH PLAIN and
LOGIN, refused recipients, SMTPUTF8."""
from __future__ import annotations

import email
import email.policy
import email.utils
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from f.dodo.lib import channels, smtp_wire
from tests.provider_standins import SmtpServer, free_port, tls_contexts


class Inbox:
    def __init__(self):
        self.messages, self.logins = [], []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((mechanism, session.ssl is not None))
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"bot", b"pa:ss w\xc3\xb6rd"),
                          handled=False)


@pytest.fixture
def server():
    """Start an aiosmtpd server with the given Controller options; stopped after the test."""
    started = []

    def start(**options) -> tuple[Inbox, int]:
        inbox, port = Inbox(), free_port()
        if "authenticator" in options:
            options["authenticator"] = inbox.authenticate
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def _read(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects and all(not part.defects for part in msg.walk())
    return msg


def test_a_non_ascii_message_reads_back_exactly(server):
    inbox, port = server()
    subject = "[Dodo] Litige ouvert: Zoë Ångström – 49,99 € " * 4  # ~180 characters, folded into several words
    text = "Montant: 49,99 €\n.\n..dots stay\nLast line"
    html = "<p>Zoë &amp; Ångström</p>"
    sent = channels.send_email({"host": "127.0.0.1", "port": port}, sender="Équipe Dodo <alerts@shop.example>",
                               to=["ops@shop.example", "Finance, EU <fin@shop.example>"], subject=subject.strip(),
                               text=text, html=html, message_id="<m1@dodo-bundle>")
    assert sent == {"status": "sent", "external_id": "<m1@dodo-bundle>"}
    (mail_from, rcpts, raw), = inbox.messages
    assert mail_from == "alerts@shop.example" and rcpts == ["ops@shop.example", "fin@shop.example"]
    assert raw.isascii()  # 7-bit: no 8BITMIME needed
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head  # RFC 5322 2.1.1: folded
    msg = _read(raw)
    assert msg["Subject"] == subject.strip()
    assert msg["From"].addresses[0].display_name == "Équipe Dodo"
    assert [a.addr_spec for a in msg["To"].addresses] == ["ops@shop.example", "fin@shop.example"]
    assert msg["To"].addresses[1].display_name == "Finance, EU"
    assert msg["Message-ID"] == "<m1@dodo-bundle>" and msg["MIME-Version"] == "1.0"
    assert abs(email.utils.parsedate_to_datetime(msg["Date"]).timestamp() - __import__("time").time()) < 60
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == text
    assert msg.get_body(("html",)).get_content().rstrip("\r\n") == html


def test_a_long_ascii_subject_is_folded_and_reads_back_exactly(server):
    inbox, port = server()
    subject = "[Dodo] Dispute opened for a very long product name " * 25  # ~1,300 characters, one word each
    channels.send_email({"host": "127.0.0.1", "port": port}, sender="alerts@shop.example", to=["ops@shop.example"],
                        subject=subject.strip(), text="t", html="<p>t</p>", message_id="<m3@dodo-bundle>")
    (_, _, raw), = inbox.messages
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head
    assert _read(raw)["Subject"] == subject.strip()


def test_an_ascii_message_is_sent_as_is_and_dot_lines_survive(server):
    inbox, port = server()
    text = "Amount: 49.99 USD\n.\n.leading dot\nend"
    channels.send_email({"host": "127.0.0.1", "port": port}, sender="alerts@shop.example", to=["ops@shop.example"],
                        subject="[Dodo] Dispute opened", text=text, html="<p>x</p>", message_id="<m2@dodo-bundle>")
    (_, _, raw), = inbox.messages
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nAmount: 49.99 USD\r\n.\r\n.leading dot\r\nend\r\n" in raw
    assert _read(raw).get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == text


def test_implicit_tls_checks_the_certificate(server):
    server_tls, client_tls = tls_contexts()
    inbox, port = server(ssl_context=server_tls)
    with smtp_wire.Session("127.0.0.1", port, timeout=5, tls=client_tls) as session:
        session.ehlo()
        assert session.send("a@shop.example", ["ops@shop.example"], smtp_wire.message(
            sender="a@shop.example", to=["ops@shop.example"], subject="s", text="t", html="h",
            message_id="<m3@dodo-bundle>")) == {}
    assert len(inbox.messages) == 1
    with pytest.raises(ssl.SSLCertVerificationError):  # a server the context does not trust
        smtp_wire.Session("127.0.0.1", port, timeout=5, tls=ssl.create_default_context())


@pytest.mark.parametrize("excluded, used", [((), "PLAIN"), (("PLAIN",), "LOGIN")])
def test_login_over_starttls_with_plain_or_login(server, monkeypatch, excluded, used):
    server_tls, client_tls = tls_contexts()
    monkeypatch.setattr(channels, "_tls", client_tls)
    inbox, port = server(authenticator=True, tls_context=server_tls, require_starttls=True,
                         auth_exclude_mechanism=list(excluded))
    resource = {"host": "127.0.0.1", "port": port, "user": "bot", "password": "pa:ss wörd"}
    channels.send_email(resource, sender="a@shop.example", to=["ops@shop.example"], subject="s", text="t",
                        html="h", message_id="<m4@dodo-bundle>")
    assert inbox.logins == [(used, True)] and len(inbox.messages) == 1
    with pytest.raises(smtp_wire.AuthError) as info:  # the doctor's check reads the code
        with channels.smtp_session(resource | {"password": "wrong"}):
            pass
    assert info.value.code == 535 and "wrong" not in str(info.value)


def test_every_recipient_refused_is_an_error_naming_them(server):
    with SmtpServer(refuse={"gone@shop.example", "left@shop.example"}) as smtp:
        with pytest.raises(channels.DeliveryError, match=r"every recipient refused: gone@shop\.example \(550 .*"
                                                         r"left@shop\.example \(550"):
            channels.send_email({"host": "127.0.0.1", "port": smtp.port}, sender="a@shop.example",
                                to=["gone@shop.example", "left@shop.example"], subject="s", text="t", html="h",
                                message_id="<m5@dodo-bundle>")
        assert smtp.messages == []


def test_a_non_ascii_address_needs_smtputf8(server):
    args = dict(sender="a@shop.example", to=["zoë@shop.example"], subject="s", text="t", html="h",
                message_id="<m6@dodo-bundle>")
    _, port = server(enable_SMTPUTF8=False)
    with pytest.raises(channels.DeliveryError, match="needs SMTPUTF8, which the server does not offer"):
        channels.send_email({"host": "127.0.0.1", "port": port}, **args)
    inbox, port = server(enable_SMTPUTF8=True)
    channels.send_email({"host": "127.0.0.1", "port": port}, **args)
    (_, rcpts, raw), = inbox.messages
    assert rcpts == ["zoë@shop.example"] and "\r\nTo: zoë@shop.example\r\n" in raw.decode()  # RFC 6532: UTF-8 as is


def test_a_line_break_in_a_header_value_is_refused():
    with pytest.raises(ValueError, match="line break"):
        smtp_wire.message(sender="a@shop.example", to=["ops@shop.example"], subject="s\r\nBcc: victim@x.example",
                          text="t", html="h", message_id="<m7@dodo-bundle>")
