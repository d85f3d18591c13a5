"""Transports: Slack (chat.postMessage or an incoming webhook; file uploads with a bot token), SMTP email,
Twilio SMS.

Each `send_*` returns the provider's id for the message (Slack ts, Twilio sid; e-mail: a
ledger outcome with its Message-ID) or raises `DeliveryError` with a message free of
secrets. Slack's chat.postMessage and incoming webhooks and Twilio's Messages API take
no idempotency key (api.slack.com/methods/chat.postMessage; twilio-python
rest/api/v2010/account/message has no such parameter), so they are retried only when the
request provably did not reach the provider (no connection, or 429); a timeout after
sending or a 5xx raises `OutcomeUnknown`, which the ledger records as "unknown" instead
of sending a second message (retry.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator  # not typing: see resources.py

from f.dodo.lib import http_client as http
from f.dodo.lib import retry
from f.dodo.lib.errors import OutcomeUnknown

SLACK_API = "https://slack.com/api"
TWILIO_API = "https://api.twilio.com"


class DeliveryError(RuntimeError):
    """A channel refused or never took the message."""


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        import ssl  # noqa: PLC0415 - e-mail only (docs/internals.md: what each step imports)

        _tls = ssl.create_default_context()
    return _tls


def _post(url: str, service: str, sleep: retry.Sleep, attempts: int, **kwargs) -> http.Response:
    """POST without an idempotency key: retried only while provably unsent (retry.py)."""
    try:
        resp = retry.request(http.shared(15.0), "POST", url, service=service, sleep=sleep, attempts=attempts,
                             resend=False, **kwargs)
    except retry.Unavailable as exc:
        raise DeliveryError(str(exc)) from None
    if resp.status_code >= 500:
        raise OutcomeUnknown(f"{service}: HTTP {resp.status_code} after the request was sent: it may "
                             "have been delivered")
    return resp


def _json(resp: http.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def send_slack(message: dict, *, token: str | None = None, channel: str | None = None,
               webhook_url: str | None = None, api_url: str = SLACK_API,
               sleep: retry.Sleep = time.sleep, attempts: int = 4) -> str:
    """Post `{text, blocks}` with a bot token (chat.postMessage) or an incoming webhook."""
    if token:
        return str(post_slack(message, token=token, channel=channel, api_url=api_url, sleep=sleep,
                              attempts=attempts).get("ts"))
    if webhook_url:
        resp = _post(webhook_url, "Slack webhook", sleep, attempts, json=message)
        if resp.status_code != 200:
            raise DeliveryError(f"Slack webhook: HTTP {resp.status_code} {resp.text[:200]}")
        return "webhook"
    raise DeliveryError("Slack: neither a token nor a webhook URL is configured")


def post_slack(message: dict, *, token: str, channel: str | None, api_url: str = SLACK_API,
               sleep: retry.Sleep = time.sleep, attempts: int = 4) -> dict:
    """chat.postMessage with a bot token; Slack's answer (`channel` is the channel's ID, `ts`
    the message's), which a file shared in the same place needs."""
    resp = _post(f"{api_url}/chat.postMessage", "Slack", sleep, attempts,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
                 content=json.dumps({"channel": channel, **message}))
    return _slack_ok(resp, "chat.postMessage")


def _slack_ok(resp: http.Response, method: str) -> dict:
    body = _json(resp)
    if resp.status_code != 200 or not body.get("ok"):
        why = "; ".join(str(e) for e in body.get("errors") or [])[:300]  # invalid_blocks says where
        raise DeliveryError(f"Slack {method}: HTTP {resp.status_code} {body.get('error', '')}"
                            f"{' (' + why + ')' if why else ''}".strip())
    return body


def upload_slack_file(content: bytes, *, filename: str, title: str, token: str, channel_id: str,
                      thread_ts: str | None = None, api_url: str = SLACK_API,
                      sleep: retry.Sleep = time.sleep, attempts: int = 4) -> str:
    """Share a file in a channel through Slack's external upload flow (files.upload is
    retired): files.getUploadURLExternal (filename, length in bytes) gives an upload URL and
    a file ID; the bytes are POSTed to that URL (pre-signed: no token); then
    files.completeUploadExternal shares `[{id, title}]` in `channel_id` (an ID, not a name),
    in the thread of `thread_ts` if given (docs.slack.dev/reference/methods/
    files.getUploadURLExternal and files.completeUploadExternal). Bot token only: an
    incoming webhook cannot upload files. Returns the file ID."""
    auth = {"Authorization": f"Bearer {token}"}
    got = _slack_ok(_post(f"{api_url}/files.getUploadURLExternal", "Slack", sleep, attempts, headers=auth,
                          data={"filename": filename, "length": str(len(content))}), "files.getUploadURLExternal")
    resp = _post(got["upload_url"], "Slack upload", sleep, attempts, content=content,
                 headers={"Content-Type": "application/octet-stream"})
    if resp.status_code != 200:
        raise DeliveryError(f"Slack file upload: HTTP {resp.status_code} {resp.text[:200]}")
    share = {"files": [{"id": got["file_id"], "title": title}], "channel_id": channel_id}
    if thread_ts:
        share["thread_ts"] = thread_ts
    _slack_ok(_post(f"{api_url}/files.completeUploadExternal", "Slack", sleep, attempts,
                    headers={**auth, "Content-Type": "application/json; charset=utf-8"}, content=json.dumps(share)),
              "files.completeUploadExternal")
    return str(got["file_id"])


_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/?^_`{|}~")


def message_id(key: str, domain: str = "dodo-bundle") -> str:
    """An RFC 5322 msg-id, `<dot-atom-text@dot-atom-text>`, unique per key: characters
    outside atext (`:` and `@` from reconcile and pasted-event keys, dots, spaces, non-ASCII)
    become `=XX` per UTF-8 byte (`=` itself included, so distinct keys stay distinct)."""
    local = "".join(c if c in _ATEXT else "".join(f"={b:02X}" for b in c.encode()) for c in key)
    if len(local) > 200:  # a header line stays short: a digest of the key instead
        import hashlib  # noqa: PLC0415 - rarely needed: not paid by every step
        local = "sha256=" + hashlib.sha256(key.encode()).hexdigest()
    return f"<{local}@{domain}>"


def send_email(smtp: dict, *, sender: str, to: list[str], subject: str, text: str, html: str,
               message_id: str, timeout: float = 20.0) -> dict:
    """Multipart text + HTML over SMTP: SSL on 465, STARTTLS on 587 or when offered.

    Returns the ledger outcome: the Message-ID, and the recipients the server refused
    while it accepted others (`detail.refused`, and `error` so the ledger row shows it).
    Every recipient refused, or any other SMTP error, raises DeliveryError. A password is
    never sent in cleartext: without TLS (no STARTTLS offered on a non-465 port) a
    configured login is refused before it is attempted.
    """
    from f.dodo.lib import smtp_wire  # noqa: PLC0415 - imported when an e-mail is sent, not by every step

    data = smtp_wire.message(sender=sender, to=to, subject=subject, text=text, html=html, message_id=message_id)
    host, port = smtp["host"], int(smtp.get("port") or 587)
    try:
        with smtp_session(smtp, timeout) as server:
            refused = server.send(smtp_wire.mailbox(sender)[1], [smtp_wire.mailbox(a)[1] for a in to], data)
    except (smtp_wire.SmtpError, OSError) as exc:
        raise DeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}: {str(exc)[:200]}") from None
    outcome: dict = {"status": "sent", "external_id": message_id}
    if refused:
        why = {rcpt: f"{code} {reply}"[:200] for rcpt, (code, reply) in refused.items()}
        outcome["detail"] = {"refused": why}
        outcome["error"] = "refused by the SMTP server: " + "; ".join(f"{r} ({w})" for r, w in why.items())
    return outcome


@contextlib.contextmanager
def smtp_session(smtp: dict, timeout: float = 20.0) -> Iterator[smtp_wire.Session]:
    """A logged-in SMTP session (f/dodo/lib/smtp_wire.py): SSL on 465, STARTTLS on 587 or
    when offered (the doctor opens one to prove the login). A password never travels in
    cleartext: on a server that offers no TLS the login is refused before it is attempted
    (DeliveryError). A refused login raises smtp_wire.AuthError."""
    from f.dodo.lib import smtp_wire  # noqa: PLC0415 - see send_email

    host, port = smtp["host"], int(smtp.get("port") or 587)
    with smtp_wire.Session(host, port, timeout=timeout, tls=_tls_context() if port == 465 else None) as server:
        server.ehlo()
        tls = port == 465
        if port != 465 and (port == 587 or server.has("starttls")):
            server.starttls(_tls_context())
            tls = True
        if smtp.get("user") and smtp.get("password"):
            if not tls:
                raise DeliveryError(
                    f"SMTP {host}:{port} offers no STARTTLS: the password of the smtp resource "
                    "(f/dodo/smtp) would travel in cleartext, so no login was attempted. Set its "
                    "`port` to 465 (implicit TLS) or 587 (STARTTLS), or use a server that offers STARTTLS")
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
        err = _json(resp)  # Twilio's error body: {code, message, more_info, status}
        more = f" ({err['more_info']})" if err.get("more_info") else ""
        raise DeliveryError(f"Twilio: HTTP {resp.status_code} {err.get('code', '')} "
                            f"{err.get('message', '')}".strip() + more)
    return str(resp.json().get("sid"))
