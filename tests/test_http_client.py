"""f/dodo/lib/http_client.py speaks HTTP/1.1 over a socket: what a provider may answer
(chunked, Content-Length, until close, 100 Continue, a repeated header) and the errors
retry.py sorts into 'not sent' and 'may have been sent'."""
import socket
import threading

import pytest

from f.dodo.lib import http_client as http
from f.dodo.lib import http_wire as wire
from tests.provider_standins import tls_contexts


class RawServer:
    """A loopback server that reads one request and writes `answer` bytes verbatim."""

    def __init__(self, answer: bytes, *, close: bool = True, tls=None):
        self.answer, self.close_after, self.tls = answer, close, tls
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:  # stopped before any request came
            return
        if self.tls:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:  # the client refused the certificate
                return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + body)
            conn.sendall(self.answer)
            if not self.close_after:
                threading.Event().wait(2)

    def stop(self):
        self.sock.close()


@pytest.fixture
def raw():
    servers = []

    def start(answer: bytes, **kw) -> RawServer:
        servers.append(RawServer(answer, **kw))
        return servers[-1]
    yield start
    for s in servers:
        s.stop()


def test_a_json_post_and_its_answer(httpserver):
    httpserver.expect_request("/v1/items", method="POST", json={"name": "ünï"},
                              headers={"Authorization": "Bearer t0k"}, query_string="a=1"
                              ).respond_with_json({"id": 7}, status=201, headers={"X-Rate": "5"})
    resp = http.Client().post(httpserver.url_for("/v1/items"), json={"name": "ünï"}, params={"a": "1"},
                              headers={"Authorization": "Bearer t0k"})
    assert (resp.status_code, resp.is_success, resp.json(), resp.headers["x-rate"]) == (201, True, {"id": 7}, "5")
    assert resp.headers.get("Content-Type") == "application/json"


def test_chunked_body_100_continue_and_repeated_headers(raw):
    server = raw(b"HTTP/1.1 100 Continue\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nSet-Cookie: a=1\r\n"
                 b"Set-Cookie: b=2\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"4;ext=1\r\ncaf\xe9\r\n8\r\n au lait\r\n0\r\nX-Trailer: t\r\n\r\n")
    resp = http.Client().post(server.url + "/x", content=b"hello")
    assert resp.text == "café au lait" and resp.headers["set-cookie"] == "a=1, b=2"
    sent = server.requests[0]
    assert sent.startswith(b"POST /x HTTP/1.1\r\n") and b"\r\nContent-Length: 5\r\n" in sent
    assert b"\r\nConnection: close\r\n" in sent and sent.endswith(b"\r\n\r\nhello")


def test_a_body_until_the_server_closes(raw):
    server = raw(b"HTTP/1.0 200 OK\r\n\r\n{\"ok\": true}")
    assert http.Client().get(server.url).json() == {"ok": True}


@pytest.mark.parametrize("answer", [
    b"",                                                                  # closed without answering
    b"SSH-2.0-OpenSSH_9.6\r\n",                                           # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",                # body cut off
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",       # bad chunk size
])
def test_a_broken_answer_is_a_remote_protocol_error(raw, answer):
    server = raw(answer)
    with pytest.raises(http.RemoteProtocolError):
        http.Client().get(server.url)


def test_no_answer_in_time_is_a_read_timeout(raw):
    server = raw(b"", close=False)
    with pytest.raises(http.ReadTimeout):
        http.Client(timeout=0.3).get(server.url)


def test_refused_connection_and_bad_urls_are_not_sent():
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(http.ConnectError):
        http.Client().get(f"http://127.0.0.1:{free}/")
    with pytest.raises(http.UnsupportedProtocol):
        http.Client().get("ftp://example.com/")
    assert issubclass(http.ConnectTimeout, http.ConnectError) and issubclass(http.ReadTimeout, http.ReadError)


def test_a_header_with_a_line_break_is_refused_before_sending(raw):
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(http.UnsupportedProtocol, match="control character"):
        http.Client().get(server.url, headers={"Authorization": "Bearer x\r\nX-Injected: 1"})
    assert server.requests == []


def test_https_verifies_the_server_certificate(raw):
    server_tls, client_tls = tls_contexts()
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", tls=server_tls)
    client = http.Client()
    client._tls = client_tls  # trusts only the stand-in's throwaway certificate
    assert client.get(server.url + "/secure").text == "ok"
    assert server.requests[0].startswith(b"GET /secure HTTP/1.1\r\nHost: 127.0.0.1:")
    untrusted = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tls=server_tls)
    with pytest.raises(http.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # the default CA store
        http.Client().get(untrusted.url)
    assert untrusted.requests == []


class ConnectProxy:
    """A loopback proxy for one tunnel: records the CONNECT head, answers `reply`, and on a
    2xx pipes bytes both ways to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int], reply: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n"):
        self.upstream, self.reply, self.heads = upstream, reply, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:p%40ss@127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.sock.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(1)
        self.heads.append(head)
        conn.sendall(self.reply)
        if not self.reply.startswith(b"HTTP/1.1 2"):
            conn.close()
            return
        up = socket.create_connection(self.upstream)
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_https_goes_through_the_https_proxy_tunnel_with_its_credentials(raw, monkeypatch):
    server_tls, client_tls = tls_contexts()
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", tls=server_tls)
    port = int(server.url.rsplit(":", 1)[1])
    proxy = ConnectProxy(("127.0.0.1", port))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = http.Client()
    client._tls = client_tls  # TLS end to end with the server, through the tunnel
    assert client.get(server.url + "/secure").text == "ok"
    assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in proxy.heads[0]  # user:p@ss
    assert server.requests[0].startswith(b"GET /secure HTTP/1.1\r\n")  # the proxy saw only the tunnel
    assert b"Proxy-Authorization" not in server.requests[0]


def test_a_refused_tunnel_is_a_connect_error_and_nothing_reaches_the_server(raw, monkeypatch):
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    proxy = ConnectProxy(("127.0.0.1", 9), reply=b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                                 b"Content-Length: 0\r\n\r\n")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with pytest.raises(http.ConnectError, match="407"):  # retry.py: not sent, safe to send again
        http.Client().get(server.url.replace("http://", "https://"))
    assert server.requests == []


def test_http_goes_to_the_http_proxy_in_absolute_form_unless_no_proxy_names_the_host(raw, monkeypatch):
    proxy = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nvp")
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert http.Client().get("http://api.provider.test:8080/v1/x?a=1").text == "vp"
    assert proxy.requests[0].startswith(b"GET http://api.provider.test:8080/v1/x?a=1 HTTP/1.1\r\n")
    direct = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ndirect")
    for no_proxy in ("127.0.0.1", "*", "other.test, 127.0.0.1"):
        monkeypatch.setenv("NO_PROXY", no_proxy)
        assert http.proxy_for("http", "127.0.0.1") is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert http.Client().get(direct.url).text == "direct"
    monkeypatch.setenv("NO_PROXY", "provider.test")
    assert http.proxy_for("http", "api.provider.test") is None and http.proxy_for("http", "notprovider.test")
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.test:3128")
    monkeypatch.delenv("http_proxy")
    with pytest.raises(http.UnsupportedProtocol, match="HTTP_PROXY"):
        http.proxy_for("http", "example.com")


@pytest.mark.parametrize("url, split", [
    ("http://Example.COM/a/b?x=1#top", (False, "example.com", 80, "Example.COM", "/a/b?x=1")),
    ("https://user:pw@api.hubapi.com", (True, "api.hubapi.com", 443, "api.hubapi.com", "/")),
    ("https://h.example:8443?q=1", (True, "h.example", 8443, "h.example:8443", "/?q=1")),
    ("http://[::1]:8000/api", (False, "::1", 8000, "[::1]:8000", "/api")),
])
def test_split_url_reads_an_url_as_urlsplit_does(url, split):
    from urllib.parse import urlsplit
    assert wire.split_url(url) == split
    parts = urlsplit(url)  # the reference: the same host, port and target
    assert (split[1], split[2]) == (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    assert split[4] == (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize("url", ["ftp://h/x", "h.example/x", "http:///x", "http://h:99999/", "http://h:x/"])
def test_split_url_refuses_what_is_not_an_http_url(url):
    with pytest.raises(ValueError, match="not an http"):
        wire.split_url(url)
