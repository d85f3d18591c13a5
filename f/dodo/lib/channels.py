"""Transports: Slack (chat.postMessage or an incoming webhook), SMTP email, Twilio SMS.

Each `send_*` returns the provider's id for the message (Slack ts, Message-ID, Twilio
sid) or raises `DeliveryError` with a message free of secrets. 429/5xx are retried with
backoff inside the call; anything else fails at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Iterator

import httpx

from f.dodo.lib import retry

SLACK_API = "https://slack.com/api"
TWILIO_API = "https://api.twilio.com"


class DeliveryError(RuntimeError):
    """A channel refused or never took the message."""


_http: httpx.Client | None = None
_tls: ssl.SSLContext | None = None


def _client() -> httpx.Client:
    # One pooled client per process: building one loads the CA bundle (~30 ms of CPU).
    global _http
    if _http is None:
        _http = httpx.Client(timeout=15.0)
    return _http


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


def _post(url: str, service: str, sleep: retry.Sleep, attempts: int, **kwargs) -> httpx.Response:
    try:
        return retry.request(_client(), "POST", url, service=service, sleep=sleep, attempts=attempts, **kwargs)
    except retry.Unavailable as exc:
        raise DeliveryError(str(exc)) from None


def send_slack(message: dict, *, token: str | None = None, channel: str | None = None,
               webhook_url: str | None = None, api_url: str = SLACK_API,
               sleep: retry.Sleep = time.sleep, attempts: int = 4) -> str:
    """Post `{text, blocks}` with a bot token (chat.postMessage) or an incoming webhook."""
    if token:
        resp = _post(f"{api_url}/chat.postMessage", "Slack", sleep, attempts,
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json; charset=utf-8"},
                     content=json.dumps({"channel": channel, **message}))
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or not body.get("ok"):
            raise DeliveryError(f"Slack chat.postMessage: HTTP {resp.status_code} {body.get('error', '')}".strip())
        return str(body.get("ts"))
    if webhook_url:
        resp = _post(webhook_url, "Slack webhook", sleep, attempts, json=message)
        if resp.status_code != 200:
            raise DeliveryError(f"Slack webhook: HTTP {resp.status_code} {resp.text[:200]}")
        return "webhook"
    raise DeliveryError("Slack: neither a token nor a webhook URL is configured")


def send_email(smtp: dict, *, sender: str, to: list[str], subject: str, text: str, html: str,
               message_id: str, timeout: float = 20.0) -> str:
    """Multipart text + HTML over SMTP: SSL on 465, STARTTLS on 587 or when offered."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(to), subject
    msg["Date"], msg["Message-ID"] = formatdate(usegmt=True), message_id
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    host, port = smtp["host"], int(smtp.get("port") or 587)
    try:
        with smtp_session(smtp, timeout) as server:
            server.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}: {str(exc)[:200]}") from None
    return message_id


@contextlib.contextmanager
def smtp_session(smtp: dict, timeout: float = 20.0) -> Iterator[smtplib.SMTP]:
    """A logged-in SMTP session: SSL on 465, STARTTLS on 587 or when offered (the doctor
    opens one to prove the login)."""
    host, port = smtp["host"], int(smtp.get("port") or 587)
    if port == 465:
        server = smtplib.SMTP_SSL(host, port, timeout=timeout, context=_tls_context())
    else:
        server = smtplib.SMTP(host, port, timeout=timeout)
    with server:
        server.ehlo()
        if port != 465 and (port == 587 or server.has_extn("starttls")):
            server.starttls(context=_tls_context())
            server.ehlo()
        if smtp.get("user") and smtp.get("password"):
            server.login(smtp["user"], smtp["password"])
        yield server


def send_sms(twilio: dict, *, to: str, body: str, sender: str | None = None,
             api_url: str = TWILIO_API, sleep: retry.Sleep = time.sleep, attempts: int = 4) -> str:
    """Twilio Messages API: form-encoded To/From(or MessagingServiceSid)/Body, basic auth."""
    sid, token = twilio["accountSid"], twilio["token"]
    sender = sender or twilio.get("from_number")
    form = {"To": to, "Body": body}
    if twilio.get("messaging_service_sid") and not sender:
        form["MessagingServiceSid"] = twilio["messaging_service_sid"]
    elif sender:
        form["From"] = sender
    else:
        raise DeliveryError("Twilio: no sender (from_number or messaging_service_sid)")
    resp = _post(f"{api_url}/2010-04-01/Accounts/{sid}/Messages.json", "Twilio", sleep, attempts,
                 auth=(sid, token), data=form)
    if resp.status_code not in (200, 201):
        try:
            err = resp.json()
        except ValueError:
            err = {}
        raise DeliveryError(f"Twilio: HTTP {resp.status_code} {err.get('code', '')} {err.get('message', '')}".strip())
    return str(resp.json().get("sid"))


def outbox_path() -> str:
    return os.environ.get("DODO_OUTBOX", os.path.join("var", "outbox.jsonl"))


def to_outbox(kind: str, record: dict) -> str:
    """Append what would have been sent to the local outbox (JSONL); returns its path."""
    path = outbox_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    line = json.dumps({"kind": kind, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record},
                      default=str, ensure_ascii=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return path
