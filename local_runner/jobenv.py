"""Each job's own environment, and Windmill's API over real HTTP for the code that calls it.

A Windmill worker starts every job with its own environment: a job token (WM_TOKEN), the
API's address (BASE_INTERNAL_URL, WM_BASE_URL), WM_WORKSPACE, WM_JOB_ID and the other
reserved variables (windmill-common variables.rs `get_reserved_variables`). Here jobs are
threads of one process, so `os.environ` becomes a mapping that shows, on a thread running
a job, that job's variables over the process environment (`job_environment`).

Scripts that call Windmill's REST API themselves (urllib, not the `wmill` client, whose
calls are answered in process by wmill_local) reach `ApiServer`: the same endpoints on
127.0.0.1, each request answered for the job whose token it carries. Bun jobs and other
processes reach it over HTTP; urllib calls made by this process's own jobs are answered
in process by the same code (`InProcessApi`), as the `wmill` client's are: a delivery's
dozen API calls then cost no loopback connection, server thread or header parsing.
"""
from __future__ import annotations

import email.message
import http
import io
import os
import secrets
import threading
import urllib.request
import urllib.response
from collections.abc import MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from . import wmill_local

_local = threading.local()


class JobEnviron(MutableMapping):
    """`os.environ` with the current thread's job variables on top (reads only; writes go
    to the process environment, as `os.environ`'s do)."""

    def __init__(self, process_env: MutableMapping):
        self.process_env = process_env

    @staticmethod
    def _overlay() -> dict:
        return getattr(_local, "env", None) or {}

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay()
        return overlay[key] if key in overlay else self.process_env[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.process_env[key] = value

    def __delitem__(self, key: str) -> None:
        del self.process_env[key]

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay()
        yield from overlay
        yield from (k for k in self.process_env if k not in overlay)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict:
        return dict(self.items())

    def __getattr__(self, name):  # encodekey, putenv helpers of os._Environ
        return getattr(self.process_env, name)


_install_lock = threading.Lock()


def install() -> None:
    """Make `os.environ` job-aware and urllib's default opener answer this process's API
    in process (idempotent)."""
    with _install_lock:
        if not isinstance(os.environ, JobEnviron):
            os.environ = JobEnviron(os.environ)
        opener = urllib.request._opener  # noqa: SLF001 - what urlopen() uses; None until first built
        if not (opener and any(isinstance(h, InProcessApi) for h in opener.handlers)):
            urllib.request.install_opener(urllib.request.build_opener(InProcessApi))


class job_environment:
    """Context manager: `env` is the job environment of the current thread."""

    def __init__(self, env: dict):
        self.env = env

    def __enter__(self):
        self.previous = getattr(_local, "env", None)
        _local.env = self.env

    def __exit__(self, *exc):
        _local.env = self.previous


class ApiServer:
    """Windmill's REST API on 127.0.0.1 for job code that calls it over HTTP; a request
    is answered for the job whose token (`Authorization: Bearer` or `?token=`) it carries."""

    def __init__(self):
        self.pid = os.getpid()
        self.jobs: dict[str, wmill_local.JobContext] = {}
        self.lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.netloc = f"127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True, name="wm-local-api").start()

    def register(self, ctx: wmill_local.JobContext) -> str:
        token = "wm_job_" + secrets.token_hex(16)
        with self.lock:
            self.jobs[token] = ctx
        return token

    def forget(self, token: str) -> None:
        with self.lock:
            self.jobs.pop(token, None)

    def context(self, token: str) -> wmill_local.JobContext | None:
        with self.lock:
            return self.jobs.get(token)

    def answer(self, method: str, target: str, headers: list, body: bytes) -> wmill_local.Answer:
        """(status, content type, body) of one request (`target`: path and query as sent;
        `headers`: (lower-case name, value) pairs), for the job whose token it carries."""
        auth = next((v for k, v in headers if k == "authorization"), "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        ctx = self.context(token)
        if ctx is None:
            return 401, "text/plain; charset=utf-8", b"Unauthorized: not a running job's token"
        with wmill_local.running(ctx):
            return wmill_local.answer(wmill_local.ApiRequest.from_target(method, target, headers, body))


class InProcessApi(urllib.request.HTTPHandler):
    """urllib's http handler, except that a request to this process's ApiServer is
    answered in the calling thread by `ApiServer.answer`, as the server would answer it
    (same status, content type and body; urllib raises HTTPError for a 4xx/5xx as usual).
    Anything else, and a body urllib would stream, goes over the network as before."""

    def http_open(self, req):
        api = _server
        if (api is None or api.pid != os.getpid() or req.host != api.netloc
                or not isinstance(req.data, (bytes, type(None)))):
            return super().http_open(req)
        headers = dict(req.unredirected_hdrs)  # Host, Content-Type/-Length (urllib's do_request_)
        headers.update((k, v) for k, v in req.headers.items() if k not in headers)
        status, content_type, data = api.answer(req.get_method(), req.selector,
                                                [(k.lower(), v) for k, v in headers.items()], req.data or b"")
        info = email.message.Message()
        info["content-type"], info["content-length"] = content_type, str(len(data))
        response = urllib.response.addinfourl(io.BytesIO(data), info, req.full_url, status)
        response.msg = http.HTTPStatus(status).phrase
        return response


def _handler(api: ApiServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # requests carry job tokens: no request log
            pass

        def _answer(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = [(k.lower(), v) for k, v in self.headers.items()]
            status, content_type, data = api.answer(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    return Handler


_server: ApiServer | None = None
_server_lock = threading.Lock()


def api_server() -> ApiServer:
    """The process's ApiServer, started on first use (again in a forked child: the
    parent's serving thread did not come along, and its socket answers for the parent)."""
    global _server
    with _server_lock:
        if _server is None or _server.pid != os.getpid():
            _server = ApiServer()
        return _server

