"""f/dodo/lib/http_client.py speaks HTTP/1.1 over a socket: what a provider may answer
(chunked, Content-Length, until close, 100 Continue, a repeated header) and the errors
retry.py sorts into 'not sent' and 'may have been sent'."""
import socket
import threading

import pytest

from f.dodo.lib import http_client as http
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
