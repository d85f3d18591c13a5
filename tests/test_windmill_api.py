"""f/dodo/lib/windmill_api.py's own HTTP/1.1 exchange, against real sockets: the answer
shapes a server may send (Content-Length, chunked, read to close), https with a verified
certificate, and the failures it must name (status, unreachable, cut short)."""

import datetime
import ipaddress
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from f.dodo.lib import windmill_api
from f.dodo.lib.windmill_api import WindmillApiError


class OneShotServer:
    """Accepts connections, records each request (head and body) and sends back the
    scripted bytes, then closes. `tls`: an SSLContext to serve https with."""

    def __init__(self, answers: list[bytes], tls: ssl.SSLContext | None = None):
        self.answers, self.tls, self.requests = list(answers), tls, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for answer in self.answers:
            peer, _ = self.sock.accept()
            try:
                if self.tls:
                    peer = self.tls.wrap_socket(peer, server_side=True)
                self.requests.append(self._read_request(peer))
                peer.sendall(answer)
            except (OSError, ssl.SSLError) as e:  # a client that refuses the certificate
                self.errors.append(e)
            finally:
                peer.close()

    @staticmethod
    def _read_request(peer) -> dict:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += peer.recv(65536)
        head, body = buf.split(b"\r\n\r\n", 1)
        request_line, *lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        while len(body) < int(fields.get("content-length", 0)):
            body += peer.recv(65536)
        return {"line": request_line, "fields": fields, "body": body}

    def close(self):
        self.sock.close()


@pytest.fixture
def api_env(monkeypatch):
    def use(server: OneShotServer, scheme: str = "http", host: str = "127.0.0.1"):
        monkeypatch.setenv("BASE_INTERNAL_URL", f"{scheme}://{host}:{server.port}")
        monkeypatch.setenv("WM_WORKSPACE", "ws")
        monkeypatch.setenv("WM_TOKEN", "job-token")
    return use


def answer(status: str, body: bytes, *fields: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{f}\r\n" for f in fields) + "\r\n").encode() + body


def test_a_get_sends_the_job_token_and_reads_a_content_length_answer(api_env):
    server = OneShotServer([answer("200 OK", b'"whsec_abc"', "Content-Length: 11", "Content-Type: application/json")])
    api_env(server)
    assert windmill_api.get_variable("f/dodo/webhook_secret") == "whsec_abc"
    [req] = server.requests
    assert req["line"] == "GET /api/w/ws/variables/get_value/f/dodo/webhook_secret HTTP/1.1"
    assert req["fields"]["authorization"] == "Bearer job-token"
    assert req["fields"]["host"] == f"127.0.0.1:{server.port}" and req["fields"]["connection"] == "close"


def test_a_chunked_answer_is_joined(api_env):
    chunks = b'7\r\n{"value\r\n6;ext=1\r\n": [1,\r\n4\r\n 2]}\r\n0\r\n\r\n'
    server = OneShotServer([answer("200 OK", chunks, "Transfer-Encoding: chunked")])
    api_env(server)
    assert windmill_api.get_flow("f/dodo/custom") == {"value": [1, 2]}


def test_an_answer_without_length_is_read_until_the_server_closes(api_env):
    server = OneShotServer([answer("200 OK", b"true")])
    api_env(server)
    assert windmill_api.resource_exists("f/dodo/hubspot") is True


def test_a_post_sends_its_json_body_with_its_length(api_env):
    server = OneShotServer([answer("201 Created", b"0190-job", "Content-Length: 8")])
    api_env(server)
    assert windmill_api.run_flow_async("f/dodo/webhook", {"event": {"n": "\u00e9"}}, skip_preprocessor=True) == "0190-job"
    [req] = server.requests
    assert req["line"] == "POST /api/w/ws/jobs/run/f/f/dodo/webhook?skip_preprocessor=true HTTP/1.1"
    assert req["fields"]["content-type"] == "application/json"
    assert json.loads(req["body"]) == {"event": {"n": "\u00e9"}}
    assert int(req["fields"]["content-length"]) == len(req["body"])


def test_a_base_url_path_prefix_quoting_and_a_query_string(api_env, monkeypatch):
    server = OneShotServer([answer("200 OK", b'"v"', "Content-Length: 3"), answer("200 OK", b"[]", "Content-Length: 2")])
    api_env(server)
    monkeypatch.setenv("BASE_INTERNAL_URL", f"http://127.0.0.1:{server.port}/windmill/")
    assert windmill_api.get_variable("f/dodo/odd name~1") == "v"
    assert windmill_api.list_completed_jobs(script_path_exact="f/dodo/webhook", success="false") == []
    assert [r["line"] for r in server.requests] == [
        "GET /windmill/api/w/ws/variables/get_value/f/dodo/odd%20name~1 HTTP/1.1",
        "GET /windmill/api/w/ws/jobs/completed/list?script_path_exact=f%2Fdodo%2Fwebhook&success=false HTTP/1.1"]


@pytest.mark.parametrize("base", ["ftp://127.0.0.1:1", "127.0.0.1:8000", "http://:8000"])
def test_a_base_url_that_is_not_http_is_unreachable(monkeypatch, base):
    monkeypatch.setenv("BASE_INTERNAL_URL", base)
    monkeypatch.setenv("WM_WORKSPACE", "ws")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    with pytest.raises(WindmillApiError, match="unreachable"):
        windmill_api.get_variable("f/dodo/webhook_secret")


def test_a_status_is_named_and_a_404_is_not_configured(api_env):
    server = OneShotServer([answer("404 Not Found", b"not found", "Content-Length: 9"),
                            answer("500 Internal Server Error", b"boom", "Content-Length: 4")])
    api_env(server)
    assert windmill_api.optional_variable("f/dodo/webhook_secret_previous") is None
    with pytest.raises(WindmillApiError, match=r"variables/get_value/f/dodo/webhook_tolerance_s: HTTP 500") as err:
        windmill_api.optional_variable("f/dodo/webhook_tolerance_s")
    assert err.value.status == 500


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n\"short\"",
                                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\"ab", b"SSH-2.0\r\n\r\n"])
def test_a_cut_or_foreign_answer_is_unreachable_not_a_value(api_env, reply):
    server = OneShotServer([reply])
    api_env(server)
    with pytest.raises(WindmillApiError, match="unreachable") as err:
        windmill_api.get_variable("f/dodo/webhook_secret")
    assert err.value.status is None


def test_a_token_with_a_line_break_is_refused_before_sending(api_env, monkeypatch):
    """The same http_wire exchange as the sinks' client: no header injection, nothing sent."""
    server = OneShotServer([answer("200 OK", b'"v"', "Content-Length: 3")])
    api_env(server)
    monkeypatch.setenv("WM_TOKEN", "job-token\r\nX-Injected: 1")
    with pytest.raises(WindmillApiError, match="variables/get_value/f/dodo/x: unreachable"):
        windmill_api.get_variable("f/dodo/x")
    monkeypatch.setenv("WM_TOKEN", "job-token")
    assert windmill_api.get_variable("f/dodo/y") == "v"  # the server's one answer went to this call
    assert [r["line"] for r in server.requests] == ["GET /api/w/ws/variables/get_value/f/dodo/y HTTP/1.1"]


def test_no_server_is_unreachable(api_env):
    server = OneShotServer([])
    server.close()
    api_env(server)
    with pytest.raises(WindmillApiError, match="variables/get_value/f/dodo/x: unreachable"):
        windmill_api.get_variable("f/dodo/x")


def _certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "windmill.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _tls_server(tmp_path, answers):
    cert_file, key_file = _certificate(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return OneShotServer(answers, tls=ctx), cert_file


def test_https_is_verified_against_the_trusted_certificates(api_env, tmp_path, monkeypatch):
    server, cert_file = _tls_server(tmp_path, [answer("200 OK", b'"over tls"', "Content-Length: 10")])
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # OpenSSL's default verify paths read it
    api_env(server, "https", "localhost")
    assert windmill_api.get_variable("f/dodo/webhook_secret") == "over tls"
    assert server.requests[0]["fields"]["authorization"] == "Bearer job-token"


def test_https_with_an_untrusted_certificate_is_unreachable(api_env, tmp_path, monkeypatch):
    server, _ = _tls_server(tmp_path, [answer("200 OK", b'"secret"', "Content-Length: 8")])
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    api_env(server, "https", "localhost")
    with pytest.raises(WindmillApiError, match="unreachable"):
        windmill_api.get_variable("f/dodo/webhook_secret")
    server.thread.join(5)
    assert server.requests == [] and server.errors  # the token never went out
