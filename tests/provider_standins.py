"""Stand-ins of Slack's chat.postMessage and Twilio's Messages API on pytest-httpserver,
answering as the providers document it, and an SMTP server (aiosmtpd) that refuses some
recipients and can offer AUTH without TLS.

- Slack (api.slack.com/methods/chat.postMessage; slackapi/python-slack-sdk
  slack_sdk/models/blocks/blocks.py): `Authorization: Bearer xoxb-...`, a JSON body with
  `channel` and `text` or `blocks`; at most 50 blocks, a section's text at most 3,000
  characters, at most 10 fields of 2,000, context at most 10 elements. A message that
  breaks a limit is refused whole: HTTP 200 `{"ok": false, "error": "invalid_blocks",
  "errors": [...], "response_metadata": {"messages": [...]}}`. Success: `{"ok": true,
  "channel", "ts", "message"}`. Rate limited: HTTP 429 with Retry-After.
- Twilio (twilio-python rest/api/v2010/account/message; twilio.com/docs/usage/twilios-response):
  `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth (sid, token),
  form-encoded To, From or MessagingServiceSid, Body; 201 with the message resource;
  errors as `{"code", "message", "more_info", "status"}`.

Anything a provider would refuse for its shape (auth, method, content type) is an
AssertionError inside the handler: pytest-httpserver keeps it and the test's
`httpserver.check_assertions()` raises it.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from werkzeug import Response

from tests import standin_checks

SLACK_TOKEN = "xoxb-test-token"
TWILIO = {"accountSid": "AC0123456789abcdef0123456789abcdef", "token": "twilio-secret",
          "from_number": "+15550001111"}


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def block_errors(blocks: list) -> list[str]:
    """Slack's own checks on a message's blocks, as `errors` entries (json-pointer paths)."""
    errors = []
    if len(blocks) > 50:
        errors.append("no more than 50 items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        if block.get("type") == "section":
            text = (block.get("text") or {}).get("text")
            if text is None and not block.get("fields"):
                errors.append(f"must provide text or fields [json-pointer:/blocks/{i}]")
            if text is not None and not 1 <= len(text) <= 3000:
                errors.append(f"must be less than 3001 characters [json-pointer:/blocks/{i}/text/text]")
            fields = block.get("fields") or []
            if len(fields) > 10:
                errors.append(f"no more than 10 items allowed [json-pointer:/blocks/{i}/fields]")
            errors += [f"must be less than 2001 characters [json-pointer:/blocks/{i}/fields/{j}/text]"
                       for j, f in enumerate(fields) if len(f.get("text", "")) > 2000]
        elif block.get("type") == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10:
                errors.append(f"must provide 1 to 10 elements [json-pointer:/blocks/{i}/elements]")
            errors += [f"must be less than 3001 characters [json-pointer:/blocks/{i}/elements/{j}/text]"
                       for j, e in enumerate(elements) if len(e.get("text", "")) > 3000]
        else:
            errors.append(f"unsupported type {block.get('type')!r} [json-pointer:/blocks/{i}]")
    return errors


class SlackApi:
    """chat.postMessage: validates like Slack, keeps what it accepted in `posted`; and the
    external file upload flow (files.getUploadURLExternal, the upload, files.completeUploadExternal,
    checked by tests/standin_checks.py), keeping each shared file in `files` as
    {"bytes", "filename", "share"}.

    `queue` holds responses served instead (before validation), for outages: a 503 is
    served after the message was posted, as when Slack's edge fails after the write.

    `scopes` are the token's: every answer lists them in the `x-oauth-scopes` header, as
    Slack's Web API does (slackapi/node-slack-sdk WebClient.ts `buildResult` reads it), and
    a method whose scope is missing answers `missing_scope` with `needed` and `provided`
    (api.slack.com/methods: files.getUploadURLExternal needs files:write). `auth.test`
    answers the token's team and bot user."""

    def __init__(self, httpserver, channel: str = "#payments", scopes: tuple[str, ...] = ("chat:write", "files:write")):
        self.scopes = scopes
        self.posted: list[dict] = []
        self.files: list[dict] = []
        self._pending: dict[str, dict] = {}
        self.queue: list[Response] = []
        self.channel = channel
        self.url = httpserver.url_for("/api")
        self._upload_url = httpserver.url_for("/upload/")
        httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(self.handle)
        httpserver.expect_request("/api/files.getUploadURLExternal", method="POST").respond_with_handler(self.reserve)
        httpserver.expect_request(re.compile(r"^/upload/F\w+$"), method="POST").respond_with_handler(self.upload)
        httpserver.expect_request("/api/files.completeUploadExternal", method="POST").respond_with_handler(self.share)
        httpserver.expect_request("/api/auth.test", method="POST").respond_with_handler(self.auth_test)

    def _answer(self, body: dict) -> Response:
        return _json(body, headers={"x-oauth-scopes": ",".join(self.scopes)})

    def _missing(self, scope: str) -> Response | None:
        if scope in self.scopes:
            return None
        return self._answer({"ok": False, "error": "missing_scope", "needed": scope, "provided": ",".join(self.scopes)})

    def auth_test(self, request):
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return _json({"ok": False, "error": "invalid_auth"})
        return self._answer({"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "dodo-bot",
                             "team_id": "T0123456789", "user_id": "U0123456789", "bot_id": "B0123456789"})

    def reserve(self, request):
        form = standin_checks.slack_get_upload_url(request, SLACK_TOKEN)
        if (refused := self._missing("files:write")) is not None:
            return refused
        file_id = f"F{len(self._pending) + 1:09d}"
        self._pending[file_id] = {"filename": form["filename"], "length": int(form["length"]), "bytes": None}
        return self._answer({"ok": True, "upload_url": self._upload_url + file_id, "file_id": file_id})

    def upload(self, request):
        file = self._pending[request.path.rsplit("/", 1)[1]]
        file["bytes"] = standin_checks.slack_upload(request, file["length"])
        return Response(f"OK - {file['length']}", 200, content_type="text/plain")

    def share(self, request):
        file_id = request.get_json()["files"][0]["id"]
        body = standin_checks.slack_complete_upload(request, SLACK_TOKEN, file_id)
        file = self._pending[file_id]
        assert file["bytes"] is not None, "files.completeUploadExternal before the bytes were uploaded"
        self.files.append({"bytes": file["bytes"], "filename": file["filename"], "share": body})
        return self._answer({"ok": True, "files": [{"id": file_id, "name": file["filename"]}]})

    def handle(self, request):
        assert request.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"
        body = request.get_json()
        assert set(body) <= {"channel", "text", "blocks"} and body["channel"] == self.channel
        assert body.get("text") or body.get("blocks")
        if self.queue:
            resp = self.queue.pop(0)
            if resp.status_code >= 500:
                self.posted.append(body)  # posted, but the answer is an error
            return resp
        if (refused := self._missing("chat:write")) is not None:
            return refused
        errors = block_errors(body.get("blocks") or [])
        if errors:
            return _json({"ok": False, "error": "invalid_blocks", "errors": errors,
                          "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]}})
        self.posted.append(body)
        ts = f"1700000000.{len(self.posted):06d}"
        return self._answer({"ok": True, "channel": "C0123456789", "ts": ts,
                             "message": {"text": body.get("text"), "ts": ts}})


class TwilioApi:
    """The Messages resource: validates like Twilio, keeps accepted messages in `sent`."""

    def __init__(self, httpserver):
        self.sent: list[dict] = []
        self.queue: list[Response] = []
        self.url = httpserver.url_for("")
        path = f"/2010-04-01/Accounts/{TWILIO['accountSid']}/Messages.json"
        httpserver.expect_request(path, method="POST").respond_with_handler(self.handle)

    @staticmethod
    def error(code: int, message: str, status: int) -> Response:
        return _json({"code": code, "message": message,
                      "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}, status)

    def handle(self, request):
        expected = base64.b64encode(f"{TWILIO['accountSid']}:{TWILIO['token']}".encode()).decode()
        assert request.headers["Authorization"] == f"Basic {expected}"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        assert {"To", "Body"} <= set(form) and ("From" in form) != ("MessagingServiceSid" in form)
        if self.queue:
            resp = self.queue.pop(0)
            if resp.status_code >= 500:
                self.sent.append(form)
            return resp
        if len(form["Body"]) > 1600:
            return self.error(21617, "The concatenated message body exceeds the 1600 character limit.", 400)
        self.sent.append(form)
        sid = f"SM{len(self.sent):032x}"
        return _json({"sid": sid, "status": "queued", "to": form["To"], "from": form.get("From"),
                      "body": form["Body"], "account_sid": TWILIO["accountSid"]}, 201)


S3_BUCKET = "dodo-lake"  # the bucket the conftest `s3` fixture creates on its moto server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts: a throwaway self-signed certificate for 127.0.0.1
    (the openssl CLI, as tests/test_doctor_live.py makes its own); the client context
    trusts only it. Install the client one as the bundle's (`channels._tls`) to talk to a
    STARTTLS stand-in."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d, "cert.pem"), Path(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        client = ssl.create_default_context(cafile=str(cert))
    return server, client


class SmtpServer:
    """aiosmtpd on loopback. Refuses RCPT for addresses in `refuse` (550 5.1.1) and accepts
    the others; with `auth=True` it offers AUTH and records each login: over plain text,
    or, with `tls` (a server context from `tls_contexts`), only after STARTTLS."""

    def __init__(self, refuse: set[str] = frozenset(), auth: bool = False, tls: ssl.SSLContext | None = None):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[str] = []
        self.refuse = set(refuse)
        self.port = free_port()
        kwargs = {"authenticator": self._authenticate, "auth_require_tls": tls is not None} if auth else {}
        if tls is not None:
            kwargs["tls_context"] = tls
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append(f"{mechanism} tls={session.ssl is not None}")
        return AuthResult(success=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
