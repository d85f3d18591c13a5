"""One HTTP/1.1 request on a new connection, over a socket: the wire-level half shared by
Windmill's API (windmill_api.py, on every delivery's preprocessor) and the sinks' client
(http_client.py).

Each Windmill job is a fresh Python process, so this imports `socket` only (`ssl` inside
`tls_context`, for an https URL): `http.client` and `urllib.request` cost ~1x-3x a bare
interpreter start more, most of it the `email` header parser (docs/internals.md, "What
each hot-path step imports"). One request per connection (`Connection: close` is the
caller's header), the answer read to its end: Content-Length, chunked, or until the
server closes; interim 1xx answers skipped; line and header limits as `http.client`'s.

The errors say whether the request may have reached the server, which retry.py's
httpx-named errors need: `Unsendable` and `ConnectFailed` (nothing was sent),
`SendFailed` (the request broke while being sent), `ReadFailed` and its
`ProtocolError` (the request was sent). `timeout` says a timeout caused it.
"""
from __future__ import annotations

import socket

MAX_LINE = 65536  # a status or header line longer than this is not HTTP (http.client's limit)
MAX_HEADERS = 100
MAX_BODY = 64 * 1024 * 1024  # far above any answer the bundle reads (Windmill job lists, provider JSON)


class WireError(Exception):
    """No HTTP answer; `timeout` is True when a timeout caused it."""

    def __init__(self, message: str, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


class Unsendable(WireError):
    """A control character in the request line or a header: refused before connecting."""


class ConnectFailed(WireError):
    """Refused, unreachable, DNS, TLS handshake or connect timeout: nothing was sent."""


class SendFailed(WireError):
    """The request broke while being sent: it may have reached the server."""


class ReadFailed(WireError):
    """The answer broke off or did not come in time: the request was sent."""


class ProtocolError(ReadFailed):
    """The server answered something that is not HTTP/1.x, or closed without answering."""


def tls_context():
    """The default TLS context (the system's CAs, hostname checked), as urllib's and httpx's."""
    import ssl  # noqa: PLC0415 - only for https: Windmill's internal URL and the tests' stand-ins are http

    return ssl.create_default_context()


def exchange(method: str, host: str, port: int, target: str, headers: dict, body: bytes | None = None, *,
             timeout: float | None, tls=None, tunnel: tuple[str, int, dict] | None = None
             ) -> tuple[int, str, dict, bytes]:
    """Send `method target` with `headers` (Content-Length added for a body, or a POST, PUT
    or PATCH without one) on a new connection to host:port, TLS with the `tls` context if
    given, through the proxy `tunnel` = (proxy host, port, CONNECT headers) if given;
    (status, reason, headers by lower-case name, body) of the final answer."""
    if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
        headers = {**headers, "Content-Length": str(len(body or b""))}
    message = request_head(method, target, headers) + (body or b"")
    sock = _connect(host, port, timeout, tls, tunnel)
    try:
        try:
            sock.sendall(message)
        except OSError as exc:
            raise SendFailed(str(exc) or type(exc).__name__, isinstance(exc, socket.timeout)) from None
        try:
            with sock.makefile("rb") as f:
                return read_answer(f, method)
        except socket.timeout as exc:
            raise ReadFailed(str(exc) or "read timed out", True) from None
        except OSError as exc:
            raise ReadFailed(str(exc) or type(exc).__name__) from None
    finally:
        sock.close()


def _connect(host: str, port: int, timeout: float | None, tls, tunnel) -> socket.socket:
    try:
        address = tunnel[:2] if tunnel else (host, port)
        sock = socket.create_connection((ascii_host(address[0]), address[1]), timeout)
        if tunnel:
            _open_tunnel(sock, host, port, tunnel[2])
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=ascii_host(host))
            except BaseException:
                sock.close()
                raise
        return sock
    except socket.timeout as exc:
        raise ConnectFailed(str(exc) or "connect timed out", True) from None
    except OSError as exc:  # refused, unreachable, DNS, TLS handshake (ssl.SSLError is an OSError)
        raise ConnectFailed(str(exc) or type(exc).__name__) from None


def split_url(url: str) -> tuple[bool, str, int, str, str]:
    """(https, host, port, authority, target) of an http(s) URL: the host lower-case without
    IPv6 brackets, the port (default 80/443), the authority for the Host header (without
    user info), the path with its query ("/" when empty; the fragment dropped). ValueError
    for another scheme or no host. Here rather than urllib.parse.urlsplit, whose import
    (with ipaddress, ~3-4 ms) every job that makes a request would pay (tests/test_step_imports.py)."""
    scheme, sep, rest = url.strip().partition("://")
    https = scheme.lower() == "https"
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: scheme {scheme.lower() if sep else ''!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, target = rest[:cut].rpartition("@")[2], rest[cut:].split("#", 1)[0]
    if authority.startswith("["):  # an IPv6 literal
        host, _, port = authority[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = authority.partition(":")
    if not host:
        raise ValueError("not an http(s) URL: no host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"not an http(s) URL: port {port!r}")
    target = target if target.startswith("/") else "/" + target
    return https, host.lower(), int(port) if port else (443 if https else 80), authority, target


def ascii_host(host: str) -> str | bytes:
    """`host` as bytes when it is ASCII, for socket.getaddrinfo and ssl's server_hostname:
    given a str, both encode it with the idna codec, whose import (encodings.idna,
    stringprep, unicodedata: ~0.5-3 ms) a job that connects would pay, and for an ASCII name
    that codec returns the same bytes. An internationalised name stays str: the codec
    converts it. (On a worker, the loader's own urllib fetch of an `f.dodo.lib` module
    imports the codec anyway: this saves it where the library is imported directly.)"""
    return host.encode("ascii") if host.isascii() else host


def _open_tunnel(sock: socket.socket, host: str, port: int, headers: dict) -> None:
    """Ask the proxy for a tunnel to host:port (HTTP CONNECT, RFC 9110 9.3.6); a refusal
    is a ConnectFailed: nothing reached the destination."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock.sendall(request_head("CONNECT", authority, {"Host": authority, **headers}))
        with sock.makefile("rb") as f:  # the proxy sends nothing after its answer until the client speaks
            status, reason, _, _ = read_answer(f, "CONNECT")
    except (OSError, WireError) as exc:
        sock.close()
        raise ConnectFailed(f"proxy: {exc}", isinstance(exc, socket.timeout)) from None
    if not 200 <= status < 300:
        sock.close()
        raise ConnectFailed(f"the proxy refused the tunnel: HTTP {status} {reason}".rstrip())


def request_head(method: str, target: str, headers: dict) -> bytes:
    """The request line and headers; a CR, LF or other control character in any of them is
    refused before anything is sent (as http.client does: no header injection)."""
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    for line in lines:
        if any(ord(c) < 32 or ord(c) == 127 for c in line):
            raise Unsendable("a control character in the request line or a header: refused")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _line(f) -> bytes:
    line = f.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("response line too long")
    return line


def read_answer(f, method: str) -> tuple[int, str, dict, bytes]:
    """(status, reason, headers, body) of the final answer read from the binary file `f`."""
    while True:  # skip interim 1xx answers (100 Continue, 103 Early Hints)
        status_line = _line(f)
        if not status_line:
            raise ProtocolError("the server closed the connection without answering")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError("not an HTTP/1.x status line")
        headers = _read_headers(f)
        status = int(code)
        if not 100 <= status < 200:
            break
    if method.upper() == "HEAD" or status in (204, 304) or (method.upper() == "CONNECT" and status < 300):
        return status, reason, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, reason, headers, _read_chunked(f)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError("bad Content-Length") from None
        if not 0 <= length <= MAX_BODY:
            raise ProtocolError(f"Content-Length {length} out of range")
        content = f.read(length)
        if len(content) != length:
            raise ProtocolError(f"body cut off after {len(content)} of {length} bytes")
        return status, reason, headers, content
    content = f.read(MAX_BODY + 1)  # until the server closes (Connection: close)
    if len(content) > MAX_BODY:
        raise ProtocolError("answer too large")
    return status, reason, headers, content


def _read_headers(f) -> dict:
    """Headers by lower-case name, a repeated header's values joined by ", "."""
    headers: dict = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(f).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            return headers
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError("malformed header line")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise ProtocolError(f"more than {MAX_HEADERS} headers")


def _read_chunked(f) -> bytes:
    """A chunked body (RFC 9112 7.1), its trailer read and ignored."""
    parts, total = [], 0
    while True:
        size_line = _line(f).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            while _line(f) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        total += size
        if size < 0 or total > MAX_BODY:
            raise ProtocolError("chunked answer too large")
        chunk = f.read(size)
        if len(chunk) != size:
            raise ProtocolError("chunked body cut off")
        parts.append(chunk)
        f.read(2)  # the chunk's CRLF
