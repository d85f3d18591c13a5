"""The few HTTP calls the sinks make (HubSpot, Slack, Twilio): HTTP/1.1 over a socket.

Why not httpx, nor `http.client`: each Windmill job is a fresh Python process. Importing
httpx costs about 9 bare interpreter starts of CPU; `http.client` about 1 more than the
socket it uses, most of it the `email` parser it reads headers with (docs/internals.md,
"What each hot-path step imports"). One request and one response per connection, with
`Content-Length` or chunked bodies, is all the sinks' providers need: the exchange itself
is f/dodo/lib/http_wire.py's, shared with windmill_api.py; this module is the httpx shape
over it.

The shape is httpx's, as much as the sinks use: `Client(timeout).request(method, url,
json=, data=, headers=, params=, auth=, timeout=)` returns a `Response` (`status_code`,
`is_success`, `reason_phrase`, `headers` (case-insensitive), `content`, `text`, `json()`), and errors
keep httpx's names, which retry.py relies on to tell a request that never left this
machine (`ConnectError`, `ConnectTimeout`, `UnsupportedProtocol`: safe to send again)
from one that may have reached the provider (`ReadTimeout`, `WriteError`, `ReadError`,
`RemoteProtocolError`), mapped from http_wire's sent/not-sent errors (`_httpx_error`).
One connection per request (`Connection: close`), so a stale
kept-alive connection never turns a sent request into an ambiguous one; the TLS
context is built once per client.

A proxy is used as httpx and urllib use it: HTTPS_PROXY (https_proxy) tunnels https
requests with CONNECT, HTTP_PROXY (http_proxy) takes http requests in absolute form, and
NO_PROXY (no_proxy) lists hosts reached directly (`*`, a host, or a domain and its
subdomains). A Windmill worker hands its proxy variables to every job
(windmill-worker `get_proxy_envs_for_lang`).
"""
from __future__ import annotations

import base64
import json as jsonlib
import os

from f.dodo.lib import http_wire as wire

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

    def get(self, name: str, default: object = None) -> object:
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

    def json(self) -> object:
        return jsonlib.loads(self.content)


class Client:
    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._tls = None

    def _context(self):
        if self._tls is None:
            self._tls = wire.tls_context()
        return self._tls

    def request(self, method: str, url: str, *, json: object = None, data: dict | None = None,
                headers: dict | None = None, params: dict | None = None, auth: tuple[str, str] | None = None,
                content: bytes | str | None = None, timeout: float | None | object = ...) -> Response:
        """One request; `timeout` (seconds, per connect and per read) overrides the client's."""
        timeout = self.timeout if timeout is ... else timeout
        try:
            tls, hostname, port, authority, target = wire.split_url(url)
        except ValueError as exc:
            raise UnsupportedProtocol(str(exc)) from None
        if params:
            target += ("&" if "?" in target else "?") + _urlencode(params)
        head = {"Accept": "*/*", "Connection": "close", **(headers or {})}
        body: bytes | None = None
        if json is not None:
            body, head["Content-Type"] = jsonlib.dumps(json).encode(), "application/json"
        elif data is not None:
            body, head["Content-Type"] = _urlencode(data).encode(), "application/x-www-form-urlencoded"
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        if auth:
            head["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        head = {"Host": authority.lower(), "Accept-Encoding": "identity", **head}
        address, tunnel = (hostname, port), None
        proxy = proxy_for("https" if tls else "http", hostname)
        if proxy and tls:
            tunnel = proxy
        elif proxy:  # plain http through the proxy: the request line names the whole URL
            address, target = proxy[:2], f"http://{head['Host']}{target}"
            head.update(proxy[2])
        try:
            status, reason, fields, content = wire.exchange(method, *address, target, head, body, timeout=timeout,
                                                            tls=self._context() if tls else None, tunnel=tunnel)
        except wire.WireError as exc:
            raise _httpx_error(exc) from None
        return Response(status, Headers(fields), content, reason)

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        pass


def proxy_for(scheme: str, hostname: str) -> tuple[str, int, dict] | None:
    """(proxy host, port, Proxy-Authorization header if any) for a request, from the
    environment; None when no proxy is set or NO_PROXY names the host."""
    env = os.environ
    url = (env.get("https_proxy") or env.get("HTTPS_PROXY") if scheme == "https"
           else env.get("http_proxy") or env.get("HTTP_PROXY"))
    if not url or _bypassed(hostname):
        return None
    from urllib.parse import unquote, urlsplit  # noqa: PLC0415 - only behind a proxy

    proxy = urlsplit(url if "://" in url else f"http://{url}")
    if proxy.scheme != "http" or not proxy.hostname:
        raise UnsupportedProtocol(f"{scheme.upper()}_PROXY: only an http:// proxy is supported")
    headers = {}
    if proxy.username is not None:
        user = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    return proxy.hostname, proxy.port or 80, headers


def _urlencode(fields: dict) -> str:
    from urllib.parse import urlencode  # noqa: PLC0415 - a query or a form (Slack's file upload, Twilio), rare
    return urlencode(fields)


def _bypassed(hostname: str) -> bool:
    entries = (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").lower().split(",")
    host = hostname.lower().rstrip(".")
    for entry in (e.strip().lstrip(".") for e in entries):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def _httpx_error(exc: wire.WireError) -> TransportError:
    """The httpx-named error for a failed exchange: retry.py sends again only what was not sent."""
    if isinstance(exc, wire.Unsendable):
        return UnsupportedProtocol(str(exc))
    if isinstance(exc, wire.ConnectFailed):
        return (ConnectTimeout if exc.timeout else ConnectError)(str(exc))
    if isinstance(exc, wire.SendFailed):
        return WriteError(str(exc))
    if isinstance(exc, wire.ProtocolError):
        return RemoteProtocolError(str(exc))
    return (ReadTimeout if exc.timeout else ReadError)(str(exc))


_shared: dict[float | None, Client] = {}


def shared(timeout: float | None = DEFAULT_TIMEOUT) -> Client:
    """The process's client for `timeout`: every caller shares it (and the TLS context it
    builds on first https use, ~25 ms of CPU for the CA bundle)."""
    client = _shared.get(timeout)
    if client is None:
        client = _shared[timeout] = Client(timeout)
    return client
