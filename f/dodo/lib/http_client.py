"""The few HTTP calls the sinks make (HubSpot, Slack, Twilio): HTTP/1.1 over a socket.

Why not httpx, nor `http.client`: each Windmill job is a fresh Python process. Importing
httpx costs about 9 bare interpreter starts of CPU; `http.client` about 1 more than the
socket it uses, most of it the `email` parser it reads headers with (docs/internals.md,
"What each hot-path step imports"). One request and one response per connection, with
`Content-Length` or chunked bodies, is all the sinks' providers need.

The shape is httpx's, as much as the sinks use: `Client(timeout).request(method, url,
json=, data=, headers=, params=, auth=, timeout=)` returns a `Response` (`status_code`,
`is_success`, `reason_phrase`, `headers` (case-insensitive), `content`, `text`, `json()`), and errors
keep httpx's names, which retry.py relies on to tell a request that never left this
machine (`ConnectError`, `ConnectTimeout`, `UnsupportedProtocol`: safe to send again)
from one that may have reached the provider (`ReadTimeout`, `WriteError`, `ReadError`,
`RemoteProtocolError`). One connection per request (`Connection: close`), so a stale
kept-alive connection never turns a sent request into an ambiguous one; the TLS
context is built once per client.
"""
from __future__ import annotations

import base64
import json as jsonlib
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

DEFAULT_TIMEOUT = 5.0  # seconds, per connect and per read, as httpx's default


class TransportError(Exception):
    """No HTTP response (httpx.TransportError's role)."""


class ConnectError(TransportError):
    """The connection could not be made: nothing was sent."""


class ConnectTimeout(ConnectError):
    """The connection was not made in time: nothing was sent."""


class PoolTimeout(TransportError):
    """Kept for retry.py's list of unsent errors (this client has no pool to wait for)."""


class UnsupportedProtocol(TransportError):
    """Not an http:// or https:// URL: nothing was sent."""


class WriteError(TransportError):
    """The request broke while being sent: it may have reached the server."""


class ReadError(TransportError):
    """The response broke off: the request was sent."""


class ReadTimeout(ReadError):
    """No response in time: the request was sent."""


class RemoteProtocolError(ReadError):
    """The server answered something that is not HTTP, or closed without answering."""


class Headers(dict):
    """Response headers by lower-case name (a repeated header's values joined by ", ")."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get_content_charset(self) -> str | None:
        for param in self.get("content-type", "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                return value.strip().strip('"').lower() or None
        return None


class Response:
    def __init__(self, status_code: int, headers: Headers, content: bytes, reason_phrase: str = ""):
        self.status_code, self.headers, self.content = status_code, headers, content
        self.reason_phrase = reason_phrase

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(self.headers.get_content_charset() or "utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


_MAX_LINE = 65536  # a status or header line longer than this is not HTTP (http.client's limit)
_MAX_HEADERS = 100


class Client:
    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._tls = None

    def _context(self):
        if self._tls is None:
            import ssl  # noqa: PLC0415 - only for https (the stand-ins in tests are http)

            self._tls = ssl.create_default_context()
        return self._tls

    def request(self, method: str, url: str, *, json: Any = None, data: dict | None = None,
                headers: dict | None = None, params: dict | None = None, auth: tuple[str, str] | None = None,
                content: bytes | str | None = None, timeout: float | None | object = ...) -> Response:
        """One request; `timeout` (seconds, per connect and per read) overrides the client's."""
        timeout = self.timeout if timeout is ... else timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsupportedProtocol(f"not an http(s) URL: scheme {parts.scheme!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if params:
            target += ("&" if parts.query else "?") + urlencode(params)
        head = {"Accept": "*/*", "Connection": "close", **(headers or {})}
        body: bytes | None = None
        if json is not None:
            body, head["Content-Type"] = jsonlib.dumps(json).encode(), "application/json"
        elif data is not None:
            body, head["Content-Type"] = urlencode(data).encode(), "application/x-www-form-urlencoded"
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        if auth:
            head["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        head = {"Host": host if parts.port is None else f"{host}:{port}", "Accept-Encoding": "identity", **head}
        if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
            head["Content-Length"] = str(len(body or b""))
        message = _request_head(method, target, head) + (body or b"")
        sock = self._connect(parts.hostname, port, parts.scheme == "https", timeout)
        try:
            try:
                sock.sendall(message)
            except OSError as exc:
                raise WriteError(str(exc) or type(exc).__name__) from None
            try:
                with sock.makefile("rb") as f:
                    return _read_response(f, method)
            except socket.timeout as exc:
                raise ReadTimeout(str(exc) or "read timed out") from None
            except OSError as exc:
                raise ReadError(str(exc) or type(exc).__name__) from None
        finally:
            sock.close()

    def _connect(self, hostname: str, port: int, tls: bool, timeout: float | None) -> socket.socket:
        """A connected (TLS-wrapped) socket; errors say that nothing was sent."""
        try:
            sock = socket.create_connection((hostname, port), timeout)
            if tls:
                try:
                    sock = self._context().wrap_socket(sock, server_hostname=hostname)
                except BaseException:
                    sock.close()
                    raise
            return sock
        except socket.timeout as exc:
            raise ConnectTimeout(str(exc) or "connect timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            raise ConnectError(str(exc) or type(exc).__name__) from None

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        pass


def _request_head(method: str, target: str, headers: dict) -> bytes:
    """The request line and headers; a CR, LF or other control character in any of them is
    refused before anything is sent (as http.client does: no header injection)."""
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    for line in lines:
        if any(ord(c) < 32 or ord(c) == 127 for c in line):
            raise UnsupportedProtocol("a control character in the request line or a header: refused")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _line(f) -> bytes:
    line = f.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise RemoteProtocolError("response line too long")
    return line


def _read_response(f, method: str) -> Response:
    while True:  # skip interim 1xx answers (100 Continue)
        status_line = _line(f)
        if not status_line:
            raise RemoteProtocolError("the server closed the connection without answering")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise RemoteProtocolError("not an HTTP/1.x status line")
        headers = _read_headers(f)
        status = int(code)
        if not 100 <= status < 200:
            break
    if method.upper() == "HEAD" or status in (204, 304):
        content = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        content = _read_chunked(f)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise RemoteProtocolError("bad Content-Length") from None
        content = f.read(length)
        if len(content) != length:
            raise RemoteProtocolError(f"body cut off after {len(content)} of {length} bytes")
    else:
        content = f.read()  # until the server closes (Connection: close)
    return Response(status, headers, content, reason)


def _read_headers(f) -> Headers:
    headers = Headers()
    for _ in range(_MAX_HEADERS + 1):
        line = _line(f).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            return headers
        name, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError("malformed header line")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{dict.get(headers, key)}, {value}" if key in headers else value
    raise RemoteProtocolError(f"more than {_MAX_HEADERS} headers")


def _read_chunked(f) -> bytes:
    parts = []
    while True:
        size_line = _line(f).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise RemoteProtocolError("bad chunk size") from None
        if size == 0:
            while _line(f) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        chunk = f.read(size)
        if len(chunk) != size:
            raise RemoteProtocolError("chunked body cut off")
        parts.append(chunk)
        f.read(2)  # the chunk's CRLF


_shared: dict[float | None, Client] = {}


def shared(timeout: float | None = DEFAULT_TIMEOUT) -> Client:
    """The process's client for `timeout`: every caller shares it (and the TLS context it
    builds on first https use, ~25 ms of CPU for the CA bundle)."""
    client = _shared.get(timeout)
    if client is None:
        client = _shared[timeout] = Client(timeout)
    return client
