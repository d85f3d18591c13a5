"""One SMTP session over a socket, and the one kind of message the bundle e-mails: the
wire-level half of channels.send_email / smtp_session, as http_wire.py is for HTTP.

Why not `smtplib` and `email.message.EmailMessage`: each Windmill job is a fresh Python
process, and their imports (the `email` package's parser, generator, policies and header
registry) cost ~28 ms of CPU in every notify job that sends an e-mail, about twice a bare
interpreter start and more than the rest of the step's imports together (~9 ms where the
worker's loader has already imported `email.message`; docs/internals.md, "What each
hot-path step imports"). The bundle sends one shape, a text + HTML alternative to a few
recipients, which this writes itself:

- the session (RFC 5321): greeting, EHLO (HELO if refused), STARTTLS (RFC 3207) with a
  second EHLO, AUTH PLAIN or LOGIN (RFC 4954, 4616), MAIL, one RCPT per recipient (the
  refused ones reported, as smtplib's `sendmail` does), DATA with dot-stuffing, QUIT;
  SMTPUTF8 (RFC 6531) when an address is not ASCII;
- the message (RFC 5322, 2045-2047): From, To, Subject, Date, Message-ID, MIME-Version,
  multipart/alternative of text/plain and text/html in UTF-8, each as is when it is
  short-lined ASCII, else base64; a non-ASCII subject or display name as RFC 2047
  encoded words. Every byte sent is 7-bit unless an address needs SMTPUTF8.

Errors: `SmtpError` (an unexpected reply; `code` is the server's), its `AuthError` (the
login refused), `OSError` (`ssl.SSLError` included) from the connection as is.
"""
from __future__ import annotations

import base64
import os
import re
import socket
import time

from f.dodo.lib.http_wire import ascii_host

MAX_LINE = 8192  # a longer reply line is not SMTP (smtplib's _MAXLINE)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ATOM_TEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")  # a display name that needs no quotes


class SmtpError(Exception):
    """The server answered `code` where the session expected something else. Found on this
    side, with the code that fits: 421 the server closed the connection, 500 a line that is
    not an SMTP reply, 501 a line break in a command (refused before sending), 504 no login
    mechanism in common, 553 an address that needs SMTPUTF8 (see `Session.send`)."""

    def __init__(self, command: str, code: int, text: str):
        super().__init__(f"{command}: {code} {text}".strip())
        self.code = code


class AuthError(SmtpError):
    """The server refused the login (535: wrong user or password)."""


class Session:
    """A connected, greeted SMTP session; implicit TLS with `tls` (port 465)."""

    def __init__(self, host: str, port: int, *, timeout: float, tls=None):
        self.host, self.extensions = host, {}
        self.sock = socket.create_connection((ascii_host(host), port), timeout)
        self.file = None
        try:
            if tls is not None:
                self.sock = tls.wrap_socket(self.sock, server_hostname=ascii_host(host))
            self.file = self.sock.makefile("rb")
            self.expect("greeting", 220)
        except BaseException:
            self._disconnect()
            raise

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.command("QUIT")
        except (OSError, SmtpError):
            pass  # the message, if any, was already accepted; only the goodbye failed
        finally:
            self._disconnect()

    def _disconnect(self) -> None:
        if self.file is not None:
            self.file.close()
        self.sock.close()

    def reply(self) -> tuple[int, str]:
        """(code, text) of the server's reply, its continuation lines ("250-...") joined by "\\n"."""
        lines = []
        while True:
            line = self.file.readline(MAX_LINE + 1)
            if not line:
                raise SmtpError("reply", 421, "the server closed the connection")
            if len(line) > MAX_LINE or not line[:3].isdigit():
                raise SmtpError("reply", 500, "not an SMTP reply line")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def command(self, line: str, secret: bool = False) -> tuple[int, str]:
        """Send one command line; the reply. (`secret`: the line is a credential, never echoed
        in an error.)"""
        if "\r" in line or "\n" in line:
            raise SmtpError("command" if secret else line, 501, "a line break in a command: refused")
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def expect(self, what: str, *codes: int, line: str | None = None) -> str:
        code, text = self.reply() if line is None else self.command(line)
        if code not in codes:
            raise SmtpError(what, code, text)
        return text

    def ehlo(self) -> None:
        """EHLO (HELO when refused), naming this machine by its address literal (RFC 5321
        4.1.3), as smtplib does on a host without a dotted name: no reverse DNS lookup."""
        address = self.sock.getsockname()[0]
        name = f"[IPv6:{address}]" if ":" in address else f"[{address}]"
        self.extensions = {}
        code, text = self.command(f"EHLO {name}")
        if code != 250:
            self.expect("HELO", 250, line=f"HELO {name}")
            return
        for entry in text.split("\n")[1:]:  # the first line greets; each next one is an extension
            keyword, _, params = entry.partition(" ")
            self.extensions[keyword.lower()] = params

    def _reset(self) -> None:
        """RSET after a refused transaction; its own failure would hide the refusal."""
        try:
            self.command("RSET")
        except (OSError, SmtpError):
            pass

    def has(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    def starttls(self, context) -> None:
        """RFC 3207: TLS on this connection, then EHLO again (what the server offers may change)."""
        self.expect("STARTTLS", 220, line="STARTTLS")
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=ascii_host(self.host))
        self.file = self.sock.makefile("rb")
        self.ehlo()

    def login(self, user: str, password: str) -> None:
        """AUTH PLAIN, or LOGIN when only that is offered (RFC 4954, 4616)."""
        offered = self.extensions.get("auth", "").upper().split()
        if "PLAIN" in offered:
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            code, text = self.command(f"AUTH PLAIN {token}", secret=True)
        elif "LOGIN" in offered:
            self.expect("AUTH LOGIN", 334, line="AUTH LOGIN")
            self.expect("AUTH LOGIN", 334, line=base64.b64encode(user.encode()).decode())
            code, text = self.command(base64.b64encode(password.encode()).decode(), secret=True)
        else:
            raise SmtpError("AUTH", 504, f"the server offers no PLAIN or LOGIN login (AUTH {' '.join(offered)})")
        if code != 235:
            raise AuthError("AUTH", code, text)

    def send(self, sender: str, recipients: list[str], message: bytes) -> dict[str, tuple[int, str]]:
        """MAIL, RCPT each, DATA: the recipients the server refused, {address: (code, text)},
        when it accepted others; every recipient refused raises SmtpError."""
        if not recipients:
            raise ValueError("no recipients")  # the callers skip such an e-mail before connecting
        options = ""
        if not all(a.isascii() for a in (sender, *recipients)):
            if not self.has("smtputf8"):
                raise SmtpError("MAIL", 553, "a non-ASCII address needs SMTPUTF8, which the server does not offer")
            options = " SMTPUTF8 BODY=8BITMIME"  # as smtplib's send_message does for such an address
        self.expect("MAIL FROM", 250, line=f"MAIL FROM:<{sender}>{options}")
        refused = {}
        for rcpt in recipients:
            code, text = self.command(f"RCPT TO:<{rcpt}>")
            if code not in (250, 251):
                refused[rcpt] = (code, text)
        if len(refused) == len(recipients):
            self._reset()
            code = next(iter(refused.values()))[0]
            raise SmtpError("RCPT TO", code, "every recipient refused: "
                            + "; ".join(f"{r} ({c} {t})" for r, (c, t) in refused.items()))
        self.expect("DATA", 354, line="DATA")
        self.sock.sendall(re.sub(rb"(?m)^\.", b"..", message) + b".\r\n")  # message ends with CRLF
        self.expect("DATA", 250)
        return refused


def message(*, sender: str, to: list[str], subject: str, text: str, html: str, message_id: str) -> bytes:
    """The e-mail as bytes with CRLF line ends: headers, then the text and HTML alternatives."""
    if any("\r" in v or "\n" in v for v in (sender, subject, message_id, *to)):
        raise ValueError("a line break in an e-mail header value")  # as EmailMessage refuses it
    boundary = "=_dodo_" + os.urandom(8).hex()  # random: no line of a part is "--" + it
    head = [f"From: {_address(sender)}", "To: " + ",\r\n ".join(_address(a) for a in to),
            f"Subject: {_header_text(subject)}", f"Date: {rfc5322_date(time.time())}", f"Message-ID: {message_id}",
            "MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"']
    lines = head + [""] + _part("plain", text, boundary) + _part("html", html, boundary) + [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def _part(subtype: str, body: str, boundary: str) -> list[str]:
    """One alternative: as is (7bit) when ASCII in lines of at most 998 characters (RFC 5322
    2.1.1), else base64 of its UTF-8 with CRLF line ends (RFC 2046 4.1.1) in lines of 76."""
    lines = body.splitlines()
    head = [f"--{boundary}", f'Content-Type: text/{subtype}; charset="utf-8"']
    if body.isascii() and all(len(line) <= 998 for line in lines):
        return head + ["Content-Transfer-Encoding: 7bit", "", *lines]
    encoded = base64.encodebytes("\r\n".join(lines).encode("utf-8")).decode("ascii").splitlines()
    return head + ["Content-Transfer-Encoding: base64", "", *encoded]


def rfc5322_date(epoch: float) -> str:
    """e.g. "Mon, 30 Nov 2026 11:20:00 +0000": English names whatever the locale."""
    t = time.gmtime(epoch)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def mailbox(text: str) -> tuple[str, str]:
    """(display name, address) of "addr" or "Name <addr>" (a quoted name unquoted)."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        name, _, address = text[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return name, address.strip()
    return "", text


def _address(text: str) -> str:
    name, address = mailbox(text)
    if not name:
        return address
    if not name.isascii():
        return f"{_encoded_words(name)} <{address}>"
    if _ATOM_TEXT.fullmatch(name):
        return f"{name} <{address}>"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def _header_text(value: str) -> str:
    """Unstructured header text: as is when ASCII and short, else RFC 2047 encoded words,
    which fold a long value over several lines (RFC 5322 2.1.1: 998 characters a line at
    most, 78 recommended)."""
    return value if value.isascii() and len(value) <= 68 else _encoded_words(value)


def _encoded_words(value: str) -> str:
    """RFC 2047 "B" encoded words, one per line so that each line stays within 78
    characters (RFC 5322 2.1.1) after a header's name; a character's UTF-8 bytes are never
    split between two words."""
    words, chunk = [], ""
    for char in value:
        if len((chunk + char).encode("utf-8")) > 39:  # 39 bytes: 52 base64 characters, 64 with "=?utf-8?b?"..."?="
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words)
