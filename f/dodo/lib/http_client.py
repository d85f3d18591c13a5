"""The few HTTP calls the sinks make (HubSpot, Slack, Twilio), over the standard library.

Why not httpx: each Windmill job is a fresh Python process, and importing httpx costs
about 9 bare interpreter starts of CPU, against about 4 for `http.client`, which a job
on Windmill has imported anyway (the worker's loader fetches `f.dodo.lib` modules with
urllib). Measured in docs/internals.md, "What each hot-path step imports".

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
import http.client
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


class Response:
    def __init__(self, status_code: int, headers: http.client.HTTPMessage, content: bytes, reason_phrase: str = ""):
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
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                               context=self._context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            try:
                conn.connect()
            except socket.timeout as exc:
                raise ConnectTimeout(str(exc) or "connect timed out") from None
            except OSError as exc:  # refused, unreachable, DNS, TLS handshake
                raise ConnectError(str(exc) or type(exc).__name__) from None
            try:
                conn.request(method, target, body=body, headers=head)
            except OSError as exc:
                raise WriteError(str(exc) or type(exc).__name__) from None
            try:
                resp = conn.getresponse()
                return Response(resp.status, resp.headers, resp.read(), resp.reason)
            except socket.timeout as exc:
                raise ReadTimeout(str(exc) or "read timed out") from None
            except http.client.HTTPException as exc:
                raise RemoteProtocolError(str(exc) or type(exc).__name__) from None
            except OSError as exc:
                raise ReadError(str(exc) or type(exc).__name__) from None
        finally:
            conn.close()

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        pass


_shared: dict[float | None, Client] = {}


def shared(timeout: float | None = DEFAULT_TIMEOUT) -> Client:
    """The process's client for `timeout`: every caller shares it (and the TLS context it
    builds on first https use, ~25 ms of CPU for the CA bundle)."""
    client = _shared.get(timeout)
    if client is None:
        client = _shared[timeout] = Client(timeout)
    return client
