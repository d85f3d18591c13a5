"""`make serve`: Windmill's HTTP endpoints for the bundle, on 127.0.0.1.

Answers the URL shapes a real Windmill instance answers, so a request that Dodo would
send to Windmill works unchanged:

    POST /api/w/<ws>/jobs/run/f/<flow path>              async: 201, job id (text/plain)
    POST /api/w/<ws>/jobs/run_wait_result/f/<flow path>  sync: the result (JSON), 200, or
                                                         422 when the run failed
         ?raw=true  ?include_header=a,b  ?include_query=a  ?skip_preprocessor=true
         (token: Authorization: Bearer / ?token=)
    GET  /api/w/<ws>/jobs_u/completed/get_result/<id>    a finished job's result
    GET  /api/w/<ws>/jobs_u/completed/get_result_maybe/<id>
    GET  /api/w/<ws>/jobs_u/get/<id>                     the job (QueuedJob / CompletedJob)
    <method> /api/r/[<ws>/]<route_path>                  each f/**/*.http_trigger.yaml

Argument mapping follows backend/windmill-api/src/args.rs (local_runner/triggers.py):
a body that is not UTF-8 or not JSON (an empty one with a JSON content type included) is
answered 400 before any job runs. With a preprocessor the job's only argument is `event`
(a JSON body that is not an object as is in event.body); without one, or with
skip_preprocessor=true, the body's keys (a non-object body as `body`, plus raw_string,
the included headers and query) are the arguments.

A body over the size limit (REQUEST_SIZE_LIMIT bytes, default Windmill's 200 MB) is
answered 413 without being read; a bad content-length, or JSON nested deeper than the
parser's stack, is answered 400. A client that stops sending (a declared body that never
arrives, an idle keep-alive connection) is cut off after READ_TIMEOUT_S seconds (default
30) of silence, with 408 when it owes a body. A client that sends, but slowly (one byte
a second), is cut off by deadlines: its headers within HEADER_TIMEOUT_S (default 10) of
their first byte, its body within HEADER_TIMEOUT_S more plus one second per
MIN_BODY_RATE bytes (default 64 KiB): no connection holds a server thread forever.

Like a server: the listen backlog takes bursts (LISTEN_BACKLOG, default 1024 pending
connections; the kernel caps it at net.core.somaxconn); a body is read into one buffer
and released once decoded; after a job the process hands freed memory back to the
system (malloc_trim) when its resident size grew; completed job records are bounded
(KEEP_JOBS, default 2,000, and KEEP_JOBS_BYTES of results, default 64 MiB; never a
queued or running job, never the newest). Async jobs go to a bounded
queue served by a pool of worker threads; under `make serve` the bundle's Postgres
connections come from a pool (local_runner.pgpool).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import io
import json
import os
import socket
import queue
import re
import signal
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import yaml

from . import deep, triggers
from .config import SCHEMA
from .runner import Runner, RunnerError, error_result
from .triggers import BadRequest

# Windmill's default request body limit (windmill-api DEFAULT_BODY_LIMIT, 200 MB; an
# instance setting raises or lowers it): a larger body is answered 413 unread.
DEFAULT_BODY_LIMIT = 2097152 * 100
# Seconds a connection may stay silent (socket timeout of each request handler).
DEFAULT_READ_TIMEOUT_S = 30.0
# A request's headers must arrive within this many seconds of their first byte; its body
# within as many more, plus one second per MIN_BODY_RATE bytes (slow senders are cut off).
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MIN_BODY_RATE = 64 * 1024
# Pending connections the kernel queues before accept (socketserver's default is 5:
# a burst of 128 new connections lost about a tenth to resets).
DEFAULT_BACKLOG = 1024
# Completed job records kept for result lookups (queued and running ones are always kept),
# and the JSON size their results may take together (a large delivery's result is let go
# once newer jobs complete, instead of staying resident behind 2,000 records).
DEFAULT_KEEP_JOBS = 2_000
DEFAULT_KEEP_BYTES = 64 * 2**20
# Resident growth (bytes) since the last trim after which a finished job trims the heap.
TRIM_GROWTH = 32 * 2**20

@dataclass
class HttpRoute:
    trigger_path: str      # f/dodo/webhook (the .http_trigger.yaml path)
    route_path: str
    method: str
    script_path: str
    is_async: bool
    raw_string: bool
    workspaced: bool
    pattern: re.Pattern


def load_routes(root: Path) -> list[HttpRoute]:
    routes = []
    for file in sorted(root.glob("f/**/*.http_trigger.yaml")):
        t = yaml.safe_load(file.read_text())
        if not t.get("is_flow", False):
            raise RunnerError(f"{file}: only flows are served by the local runner")
        if t.get("authentication_method", "none") != "none":
            raise RunnerError(f"{file}: authentication_method {t['authentication_method']} is not implemented locally")
        if t.get("wrap_body") or t.get("is_static_website"):
            raise RunnerError(f"{file}: wrap_body / is_static_website are not implemented locally")
        # route params `:name` match one segment
        regex = "/".join(f"(?P<{seg[1:]}>[^/]+)" if seg.startswith(":") else re.escape(seg)
                         for seg in t["route_path"].strip("/").split("/"))
        routes.append(HttpRoute(
            str(file.relative_to(root)).removesuffix(".http_trigger.yaml"), t["route_path"],
            t.get("http_method", "post").upper(), t["script_path"], t.get("request_type", "sync") == "async",
            bool(t.get("raw_string")), bool(t.get("workspaced_route")), re.compile(f"^{regex}$")))
    return routes


class App:
    """Jobs, their queue and workers, around one Runner."""

    def __init__(self, runner: Runner, *, token: str | None = None, workers: int = 4,
                 queue_size: int = 1000, keep_results: int = DEFAULT_KEEP_JOBS, max_body: int = DEFAULT_BODY_LIMIT,
                 keep_bytes: int = DEFAULT_KEEP_BYTES):
        self.runner = runner
        self.max_body = max_body
        self.workspace = runner.config.workspace
        self.token = token or None
        self.routes = load_routes(runner.root)
        self.jobs: OrderedDict[str, dict] = OrderedDict()
        self.keep_results = keep_results
        self.completed = 0  # completed records in self.jobs
        self.keep_bytes, self.kept_bytes = keep_bytes, 0  # their results' JSON size: bounded too
        self._trimmed_rss = 0
        self.lock = threading.Lock()
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.workers = [threading.Thread(target=self._work, daemon=True, name=f"wm-worker-{i}")
                        for i in range(workers)]
        for w in self.workers:
            w.start()

    # -- jobs

    def _record(self, job_id: str, **fields) -> None:
        with self.lock:
            rec = self.jobs.setdefault(job_id, {"id": job_id})
            rec.update(fields)
            if fields.get("status") == "completed":
                self.jobs.move_to_end(job_id)  # records leave in order of completion
                self.completed += 1
                self.kept_bytes += rec.get("result_bytes", 0)
            # the newest record always stays (its client is about to fetch it)
            while self.completed > self.keep_results or self.kept_bytes > self.keep_bytes:
                oldest = next(iter(self.jobs))
                if oldest == job_id:
                    break
                if self.jobs[oldest]["status"] == "completed":
                    self.kept_bytes -= self.jobs.pop(oldest).get("result_bytes", 0)
                    self.completed -= 1
                else:  # queued or running: kept; it moves behind the completed ones
                    self.jobs.move_to_end(oldest)

    def submit(self, path: str, args: dict, event: dict | None) -> str:
        job_id = str(uuid.uuid4())
        self._record(job_id, script_path=path, status="queued", created_at=_now())
        try:
            self.queue.put_nowait((job_id, path, args, event))
        except queue.Full:
            with self.lock:
                self.jobs.pop(job_id, None)
            raise
        return job_id

    def run(self, path: str, args: dict, event: dict | None, job_id: str | None = None) -> dict:
        job_id = job_id or str(uuid.uuid4())
        self._record(job_id, script_path=path, status="running", created_at=_now(), started_at=_now())
        t0 = time.perf_counter()
        try:
            run = self.runner.run_flow(path, args, event=event, job_id=job_id)
            success, result, skipped = run.success, run.result, run.skipped
            jobs = [{"id": j.id, "kind": j.kind, "path": j.path, "step_id": j.step_id, "parent": j.parent,
                     "attempt": j.attempt, "success": j.success, "duration_ms": round(j.duration_ms, 3)}
                    for j in run.jobs]
        except Exception as e:  # noqa: BLE001 - a runner error completes the job as failed
            success, result, skipped, jobs = False, error_result(e), False, []
        rec = {"id": job_id, "script_path": path, "status": "completed", "success": success, "result": result,
               "is_skipped": skipped, "duration_ms": round((time.perf_counter() - t0) * 1000, 3), "local_jobs": jobs,
               "result_bytes": len(deep.dumps(result))}
        self._record(job_id, **rec)
        with self.lock:
            return self.jobs.get(job_id, rec)

    def trim_heap(self) -> None:
        """Give freed memory back to the system once the process grew by TRIM_GROWTH
        (called when a job's arguments are gone): a large delivery's allocations otherwise
        stay resident (glibc keeps freed heap in its per-thread arenas)."""
        rss = _rss()
        if rss - self._trimmed_rss > TRIM_GROWTH:
            _malloc_trim()
            self._trimmed_rss = _rss()

    def _work(self) -> None:
        while True:
            job_id, path, args, event = self.queue.get()
            try:
                self.run(path, args, event, job_id)
            except Exception:  # noqa: BLE001 - keep the worker alive
                traceback.print_exc()
            finally:
                args = event = None
                self.trim_heap()
                self.queue.task_done()

    def job_view(self, job_id: str) -> dict | None:
        with self.lock:
            rec = dict(self.jobs.get(job_id) or {})
        if not rec:
            return None
        done = rec["status"] == "completed"
        view = {"id": job_id, "type": "CompletedJob" if done else "QueuedJob", "job_kind": "flow",
                "script_path": rec["script_path"], "created_at": rec["created_at"],
                "started_at": rec.get("started_at"), "running": rec["status"] == "running", "canceled": False,
                "workspace_id": self.workspace}
        if done:
            view.update(success=rec["success"], result=rec["result"], duration_ms=rec["duration_ms"],
                        is_skipped=rec["is_skipped"], local_jobs=rec["local_jobs"])
        return view

    # -- argument mapping (args.rs): local_runner/triggers.py

    def webhook_call(self, path: str, query_string: str, headers: triggers.Headers,
                     raw: bytes) -> tuple[dict, dict | None]:
        return triggers.webhook_call(query_string, headers, raw, has_preprocessor=self.runner.has_preprocessor(path))

    def route_call(self, route: HttpRoute, path: str, params: dict, method: str, query_string: str,
                   headers: triggers.Headers, raw: bytes) -> tuple[dict, dict | None]:
        return triggers.route_call(route_path=route.route_path, called_path=path, params=params, method=method,
                                   query_string=query_string, headers=headers, raw=raw,
                                   raw_string=route.raw_string,
                                   has_preprocessor=self.runner.has_preprocessor(route.script_path))

    def authorized(self, headers: dict, query: dict) -> bool:
        if not self.token:
            return True
        given = headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)


def _malloc_trim() -> None:
    trim = getattr(_libc, "malloc_trim", None)  # glibc only
    if trim:
        trim(0)


_statm: dict[int, int] = {}  # pid -> open /proc/self/statm (a forked child opens its own)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    """Resident bytes (checked after every job and request: one pread of an open file)."""
    try:
        fd = _statm.get(os.getpid())
        if fd is None:
            fd = _statm[os.getpid()] = os.open("/proc/self/statm", os.O_RDONLY)
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE
    except OSError:  # not Linux: no trimming either
        return 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_W = re.compile(r"^/api/w/(?P<ws>[^/]+)/(?P<rest>.*)$")


class _DeadlineReader(io.RawIOBase):
    """The connection's reads, under a deadline: none while idle between requests (the
    socket timeout `idle` applies), armed by a request's first byte (`header_timeout`),
    extended for its body. Past it a read raises TimeoutError, however slowly bytes
    still trickle in."""

    def __init__(self, sock: socket.socket, idle: float | None, header_timeout: float):
        self.sock, self.idle, self.header_timeout = sock, idle, header_timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def extend(self, seconds: float) -> None:
        self.deadline = max(self.deadline or 0.0, time.monotonic() + seconds)

    def readinto(self, b) -> int:
        if self.deadline is None:
            self.sock.settimeout(self.idle)
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request not received in time")
            self.sock.settimeout(left if self.idle is None else min(left, self.idle))
        n = self.sock.recv_into(b)
        if self.deadline is None and n:
            self.deadline = time.monotonic() + self.header_timeout
        return n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = DEFAULT_BACKLOG


def make_handler(app: App, header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
                 min_body_rate: int = DEFAULT_MIN_BODY_RATE):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "windmill-local"
        # TCP_NODELAY: headers and body are two writes; with Nagle the body waits for
        # the client's delayed ACK (~40 ms a response on keep-alive connections).
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # quiet: no request logs (they could carry tokens)
            pass

        def _send(self, status: int, body: Any, ctype: str = "application/json"):
            data = body.encode() if isinstance(body, str) and ctype != "application/json" else deep.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self, method: str):
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            received = list(self.headers.items())  # in order, repeated names included
            headers = {k.lower(): v for k, v in received}
            length = (self.headers.get("content-length") or "0").strip()
            if not length.isdigit():  # int() would take "-1" and read to EOF
                self.close_connection = True
                return self._send(400, "invalid content-length", "text/plain")
            if int(length) > app.max_body:  # refused unread, as Windmill's body limit does
                self.close_connection = True
                return self._send(413, f"request body over {app.max_body} bytes", "text/plain")
            try:
                raw = self._read_body(int(length))
            except TimeoutError:  # the declared body never came, or too slowly: free the thread
                self.close_connection = True
                return self._send(408, "request body not received in time", "text/plain")
            try:
                self._route(method, url, query, received, raw)
                raw = None
            except BadRequest as e:
                self._send(400, str(e), "text/plain")
            except triggers.UnsupportedMediaType as e:
                self._send(415, str(e), "text/plain")
            except queue.Full:
                self.send_response(503)
                self.send_header("retry-after", "1")
                self.send_header("content-length", "0")
                self.end_headers()
            except RunnerError as e:
                self._send(404, str(e), "text/plain")
            finally:
                raw = None
                app.trim_heap()

        def setup(self):
            super().setup()
            self._reader = _DeadlineReader(self.connection, self.timeout, header_timeout)
            self.rfile = io.BufferedReader(self._reader, 64 * 1024)

        def handle_one_request(self):
            self._reader.deadline = None  # idle until the next request's first byte
            super().handle_one_request()

        def _read_body(self, length: int) -> bytearray:
            """The body into one buffer (no chunks joined), within its deadline."""
            self._reader.extend(header_timeout + length / min_body_rate)
            buf = bytearray(length)
            view, got = memoryview(buf), 0
            while got < length:
                n = self.rfile.readinto(view[got:])
                if not n:
                    raise TimeoutError("connection closed before the body ended")
                got += n
            view.release()
            self._reader.deadline = None
            return buf

        def _route(self, method, url, query, received, raw):
            path, headers = url.path, {k.lower(): v for k, v in received}
            if path.startswith("/api/r/"):
                return self._http_route(method, path.removeprefix("/api/r/"), url.query, received, raw)
            m = _W.match(path)
            if not m or m["ws"] != app.workspace:
                return self._send(404, "not found", "text/plain")
            if not app.authorized(headers, query):
                return self._send(401, "Unauthorized", "text/plain")
            rest = m["rest"]
            if method == "POST" and rest.startswith(("jobs/run/f/", "jobs/run_wait_result/f/")):
                sync = rest.startswith("jobs/run_wait_result/")
                flow = rest.split("/f/", 1)[1]
                app.runner.load_flow(flow)  # unknown flow -> RunnerError -> 404
                args, event = app.webhook_call(flow, url.query, received, raw)
                if sync:
                    return self._result(app.run(flow, args, event))
                return self._send(201, app.submit(flow, args, event), "text/plain")
            if method == "GET" and rest.startswith("jobs_u/"):
                return self._job_get(rest.removeprefix("jobs_u/"))
            return self._send(404, "not found", "text/plain")

        def _result(self, rec: dict):
            """execution.rs@3e67f263 `result_to_response`: a result's own
            windmill_status_code, else 200 for a success and 422 for a failure."""
            result = rec["result"]
            status = 200 if rec["success"] else 422
            if isinstance(result, dict) and isinstance(result.get("windmill_status_code"), int):
                status = result["windmill_status_code"]
            self._send(status, result)

        def _job_get(self, rest: str):
            kind, _, job_id = rest.rpartition("/")
            view = app.job_view(job_id)
            if kind == "get":
                return self._send(200, view) if view else self._send(404, f"Job {job_id} not found", "text/plain")
            done = bool(view) and view["type"] == "CompletedJob"
            if kind == "completed/get_result":
                return self._send(200, view["result"]) if done else self._send(
                    404, f"Job {job_id} not found or not completed", "text/plain")
            if kind == "completed/get_result_maybe":
                if not view:
                    return self._send(404, f"Job {job_id} not found", "text/plain")
                return self._send(200, {"completed": done, "result": view.get("result"),
                                        "success": view.get("success"), "started": view["started_at"] is not None})
            return self._send(404, "not found", "text/plain")

        def _http_route(self, method, rel, query_string, received, raw):
            for route in app.routes:
                candidate = rel
                if route.workspaced:
                    ws, _, candidate = rel.partition("/")
                    if ws != app.workspace:
                        continue
                m = route.pattern.match(candidate.strip("/"))
                if m and route.method == method:
                    params = {k: unquote(v) for k, v in m.groupdict().items()}  # axum Path: percent-decoded
                    args, event = app.route_call(route, "/" + candidate.strip("/"), params, method,
                                                 query_string, received, raw)
                    if route.is_async:
                        return self._send(201, app.submit(route.script_path, args, event), "text/plain")
                    return self._result(app.run(route.script_path, args, event))
            return self._send(404, "route not found", "text/plain")

        def do_POST(self):
            self._dispatch("POST")

        def do_GET(self):
            self._dispatch("GET")

        def do_PUT(self):
            self._dispatch("PUT")

        def do_PATCH(self):
            self._dispatch("PATCH")

        def do_DELETE(self):
            self._dispatch("DELETE")

    return Handler


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000, *,
                read_timeout: float | None = DEFAULT_READ_TIMEOUT_S,
                header_timeout: float = DEFAULT_HEADER_TIMEOUT_S, min_body_rate: int = DEFAULT_MIN_BODY_RATE,
                backlog: int = DEFAULT_BACKLOG) -> ThreadingHTTPServer:
    """`read_timeout`: seconds a connection may stay silent (None: forever);
    `header_timeout`, `min_body_rate`: the deadlines of a request (module docstring);
    `backlog`: the listen queue."""
    handler = make_handler(app, header_timeout, min_body_rate)
    handler.timeout = read_timeout  # StreamRequestHandler.setup: socket.settimeout
    server_class = type("Server", (_Server,), {"request_queue_size": backlog})
    return server_class((host, port), handler)


def apply_migrations(config, schema: str = SCHEMA) -> str:
    """Apply the bundle's pending migrations once at start, as the owner's f/dodo/migrate
    would: the jobs only check the version."""
    from f.dodo.lib import db  # noqa: PLC0415 - the bundle's own library

    db.connect(config.get_resource("f/dodo/postgres"), schema, migrate=True).close()
    return f"migrations: applied to schema {schema}"


def _without_password(url: str) -> str:
    """The URL to print: a DATABASE_URL's password never reaches the terminal or a log."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def start_postgres(env: dict, data_dir: str | os.PathLike | None = None) -> tuple[Any, str]:
    """(embedded server or None, the line `make serve` prints about its database).
    DATABASE_URL wins; else an embedded server, throw-away, or kept in `data_dir` (durable:
    fsync on, so a kept directory survives a crash) and reused by the next run."""
    if env.get("DATABASE_URL"):
        if data_dir:
            from f.dodo.lib.errors import ConfigError  # noqa: PLC0415 - the bundle's own library
            raise ConfigError("--data-dir", "it keeps the embedded Postgres's data but DATABASE_URL is set",
                              "unset DATABASE_URL or drop --data-dir")
        return None, f"postgres: {_without_password(env['DATABASE_URL'])} (DATABASE_URL)"
    from .pg_server import start_server  # noqa: PLC0415
    pg = start_server(data_dir=data_dir, durable=bool(data_dir))
    kept = f"data kept in {pg.data_dir}" if data_dir else "throw-away data; --data-dir DIR keeps it"
    return pg, f"postgres: {pg.url} ({kept})"


def build(root: str | Path = ".", env: dict | None = None,
          data_dir: str | os.PathLike | None = None) -> tuple[App, Any]:
    """The App `make serve` runs (configuration from `env`, default os.environ), and the
    embedded Postgres it started when DATABASE_URL is unset (else None; caller stops it)."""
    from .config import Config  # noqa: PLC0415
    env = dict(os.environ if env is None else env)
    pg, line = start_postgres(env, data_dir)
    print(line, flush=True)
    if pg:
        env["DATABASE_URL"] = pg.url
    config = Config.from_env(env, root=root)  # shipped variables, integrations, f/dodo/postgres
    print(apply_migrations(config), flush=True)
    app = App(Runner(root, config), token=env.get("WM_TOKEN"), workers=int(env.get("WORKERS", "4")),
              queue_size=int(env.get("QUEUE_SIZE", "1000")), keep_results=int(env.get("KEEP_JOBS", DEFAULT_KEEP_JOBS)),
              keep_bytes=int(env.get("KEEP_JOBS_BYTES", DEFAULT_KEEP_BYTES)))
    return app, pg


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def serve(root: str | Path = ".", env: dict | None = None, data_dir: str | None = None) -> None:
    """Entry point of `python -m local_runner serve [--data-dir DIR]` (configuration from
    the environment)."""
    env = dict(os.environ if env is None else env)
    from . import pgpool  # noqa: PLC0415
    from .demo import quiet_wmill_client  # noqa: PLC0415
    pgpool.install(max_idle=int(env.get("PG_POOL_IDLE", "16")))  # the server's jobs share connections
    quiet_wmill_client()  # a 404 for an optional integration is expected, not an error to print per event
    # unconfigured sinks write what they would have sent here (on Windmill: nowhere)
    os.environ["DODO_OUTBOX"] = env.get("DODO_OUTBOX") or os.path.join("var", "outbox.jsonl")
    app, pg = build(root, env, data_dir)
    port = int(env.get("PORT", "8000"))
    server = make_server(app, "127.0.0.1", port,
                         read_timeout=float(env.get("READ_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S)),
                         header_timeout=float(env.get("HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S)),
                         min_body_rate=int(env.get("MIN_BODY_RATE", DEFAULT_MIN_BODY_RATE)),
                         backlog=int(env.get("LISTEN_BACKLOG", DEFAULT_BACKLOG)))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` too stops the embedded Postgres
    configured = sorted(p for p in app.runner.config.resources if p != "f/dodo/postgres")
    print(f"serving Windmill endpoints on http://127.0.0.1:{port} (workspace {app.workspace}, "
          f"token {'required' if app.token else 'not required'}, database {'embedded' if pg else 'DATABASE_URL'}, "
          f"integrations: {', '.join(configured) or 'none (local outbox)'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if pg:
            pg.stop()
