"""`make serve` holds up like a server: bursts of connections, slow senders, a large
body, many jobs, integers beyond 2^53 (issue 11 item 5, issue 12 item 5).

No timing assertions: socket timeouts below are hang guards, and the server's deadlines
are set short so that a cut-off happens long before a guard would fire.
"""
from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from local_runner import Config, Runner
from local_runner.server import DEFAULT_BACKLOG, App, make_server

WS = "demo"
REPO = Path(__file__).resolve().parent.parent


def flow(root: Path, name: str, value: dict) -> None:
    d = root / f"f/t/{name}__flow"
    d.mkdir(parents=True, exist_ok=True)
    (d / "flow.yaml").write_text(yaml.safe_dump({"summary": name, "value": value,
                                                 "schema": {"type": "object", "properties": {}}}))


def script(root: Path, name: str, code: str) -> None:
    (root / "f/t").mkdir(parents=True, exist_ok=True)
    (root / f"f/t/{name}.py").write_text(textwrap.dedent(code))


@pytest.fixture
def root(tmp_path):
    script(tmp_path, "echo", "def main(x=None):\n    return x\n")
    flow(tmp_path, "echo", {"modules": [{"id": "a", "value": {"type": "script", "path": "f/t/echo",
                                                               "input_transforms": {"x": {"type": "javascript",
                                                                                          "expr": "flow_input.x"}}}}]})
    return tmp_path


def serving(root: Path, **kw):
    app = App(Runner(root, Config(workspace=WS)), workers=2, queue_size=kw.pop("queue_size", 50),
              keep_results=kw.pop("keep_results", 2_000))
    server = make_server(app, "127.0.0.1", 0, **kw)
    return app, server


# ---------------------------------------------------------------- bursts


def test_a_burst_of_128_new_connections_loses_none(root):
    """128 connections opened at once, before the server accepts any: the kernel's listen
    queue must hold them all (with socketserver's backlog of 5 the rest see their SYNs
    dropped), then every one gets its answer."""
    app, server = serving(root)
    assert DEFAULT_BACKLOG >= 128
    socks = [socket.socket() for _ in range(128)]
    started = False
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex(server.server_address)
        # established = writable with no error; 3 s is a hang guard (loopback handshakes
        # are done by the kernel in microseconds, or not at all while the queue is full)
        pending, deadline = set(socks), time.monotonic() + 3
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.2)
            pending -= {s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0}
        assert len(pending) == 0, f"{len(pending)} of 128 connections not established"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started = True
        request = (f"POST /api/w/{WS}/jobs/run_wait_result/f/f/t/echo HTTP/1.1\r\nhost: x\r\n"
                   "content-type: application/json\r\ncontent-length: 8\r\nconnection: close\r\n\r\n{\"x\": 1}").encode()
        answers = []
        for s in socks:
            s.settimeout(60)  # a hang guard
            s.sendall(request)
        for s in socks:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            answers.append(data)
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 128
        assert all(a.endswith(b"\r\n\r\n1") for a in answers)
    finally:
        for s in socks:
            s.close()
        if started:
            server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- slow senders


def _trickle(server, data: bytes, seconds_per_byte: float) -> tuple[int, bytes]:
    """Send `data` a byte at a time; returns (bytes sent before the server hung up, answer)."""
    with socket.create_connection(server.server_address, timeout=30) as sock:  # 30 s: a hang guard
        sent = 0
        try:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
                sent += 1
                time.sleep(seconds_per_byte)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
        return sent, answer


def test_headers_sent_a_byte_at_a_time_are_cut_off(root):
    # Silence never lasts read_timeout (5 s), so only the header deadline can stop this
    # sender; without it the thread would serve one byte every 0.1 s for as long as it likes.
    app, server = serving(root, read_timeout=5, header_timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        headers = (f"POST /api/w/{WS}/jobs/run_wait_result/f/f/t/echo HTTP/1.1\r\n" + "x-pad: 1\r\n" * 40).encode()
        sent, _ = _trickle(server, headers, 0.1)
        assert sent < len(headers), "the server kept reading a trickle of headers"
        ok = httpx.post(f"http://127.0.0.1:{server.server_address[1]}/api/w/{WS}/jobs/run_wait_result/f/f/t/echo",
                        json={"x": 2})
        assert ok.status_code == 200 and ok.json() == 2
    finally:
        server.shutdown()
        server.server_close()


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408(root):
    app, server = serving(root, read_timeout=5, header_timeout=0.5, min_body_rate=10**6)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = b'{"x": "' + b"a" * 400 + b'"}'
        head = (f"POST /api/w/{WS}/jobs/run_wait_result/f/f/t/echo HTTP/1.1\r\nhost: x\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection(server.server_address, timeout=30) as sock:  # 30 s: a hang guard
            sock.sendall(head)
            sent = 0
            try:
                for i in range(len(body)):
                    sock.sendall(body[i:i + 1])
                    sent += 1
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert sent < len(body)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert app.jobs == {}  # nothing ran on a partial body
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- a large body

BIG = """
import hashlib, hmac, http.client, json, os, sys, threading, time
sys.path[:0] = [{repo!r}]
from pathlib import Path
from local_runner import Config, Runner
from local_runner.server import App, make_server

def status(key):
    return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) * 1024

app = App(Runner(Path({root!r}), Config(workspace="demo")), workers=1)
server = make_server(app, "127.0.0.1", 0)
threading.Thread(target=server.serve_forever, daemon=True).start()
size = {size}
body = (b'{{"type": "payment.succeeded", "data": {{"metadata": {{"blob": "' + b"x" * (size - 64)
        + b'"}}, "n": 9007199254740993}}}}')
signature = hmac.new(b"k", body, hashlib.sha256).hexdigest()
for attempt in range(2):
    before = status("VmRSS:")
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS: the peak of this request alone
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=600)
    conn.request("POST", "/api/w/demo/jobs/run_wait_result/f/f/t/big?raw=true&include_header=x-sig",
                 body=body, headers={{"x-sig": signature}})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    time.sleep(0.2)
    print(json.dumps({{"status": resp.status, "answer": answer, "before": before, "peak": status("VmHWM:"),
                      "after": status("VmRSS:"), "size": len(body)}}), flush=True)
"""


def test_a_large_signed_body_peaks_at_a_small_multiple_and_is_given_back(root):
    """A signed body through a preprocessor (verifies the raw bytes, passes the parsed
    event on) and a step reading it: the server's peak memory stays within 6x the body
    (it was ~22x) and after each request the process is back within half a body of
    where it started (it kept ~200 MiB per 199 MiB body)."""
    (root / "f/t/big__flow").mkdir(parents=True)
    (root / "f/t/big__flow/pre.py").write_text(textwrap.dedent("""\
        import hashlib, hmac

        def preprocessor(event: dict):
            raw = event["raw_string"].encode()
            if not hmac.compare_digest(hmac.new(b"k", raw, hashlib.sha256).hexdigest(), event["headers"]["x_sig"]):
                raise ValueError("bad signature")
            return {"event": event["body"]}
    """))
    script(root, "measure", "def main(event: dict):\n"
                            "    return {'blob': len(event['data']['metadata']['blob']), 'n': event['data']['n']}\n")
    (root / "f/t/big__flow/flow.yaml").write_text(yaml.safe_dump({"summary": "big", "value": {
        "preprocessor_module": {"id": "preprocessor", "value": {"type": "rawscript", "language": "python3",
                                                                "content": "!inline pre.py", "input_transforms": {}}},
        "modules": [{"id": "m", "value": {"type": "script", "path": "f/t/measure", "input_transforms": {
            "event": {"type": "javascript", "expr": "flow_input.event"}}}}]}}))
    size = 64 * 2**20
    code = BIG.format(repo=str(REPO), root=str(root), size=size)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    for line in done.stdout.splitlines():
        m = json.loads(line)
        assert m["status"] == 200, m["answer"]
        assert m["answer"] == {"blob": size - 64, "n": 9007199254740993}  # whole, and exact
        assert m["peak"] - m["before"] < 6 * m["size"], f"peak {(m['peak'] - m['before']) / m['size']:.1f}x the body"
        assert m["after"] - m["before"] < m["size"] / 2, f"kept {(m['after'] - m['before']) / 2**20:.0f} MiB"


# ---------------------------------------------------------------- 2^53 + 1


def test_integers_beyond_2_53_pass_through_where_windmill_passes_them(root):
    """js_eval.rs eval_timeout: `flow_input.<key>` and `results.<id>[n].a.b` (RE_FULL: an
    index only right after the id) are passed through as stored JSON (exact); any other
    expression runs in JavaScript, where numbers are doubles."""
    script(root, "pair", "def main(a, b, c, d, e):\n    return {'a': a, 'b': b, 'c': c, 'd': d, 'e': e}\n")
    flow(root, "big_ints", {"modules": [
        {"id": "first", "value": {"type": "script", "path": "f/t/echo", "input_transforms": {
            "x": {"type": "javascript", "expr": "flow_input.payload"}}}},
        {"id": "second", "value": {"type": "script", "path": "f/t/pair", "input_transforms": {
            "a": {"type": "javascript", "expr": "flow_input.n"},
            "b": {"type": "javascript", "expr": 'flow_input["n"]'},
            "c": {"type": "javascript", "expr": "results.first.items[1]"},
            "d": {"type": "javascript", "expr": "results.first.items"},
            "e": {"type": "javascript", "expr": "flow_input.n + 0"}}}}]})
    big = 2**53 + 1
    run = Runner(root, Config()).run_flow("f/t/big_ints", {"n": big, "payload": {"items": [1, big]}})
    assert run.success, run.result
    assert run.result == {"a": big, "b": big, "c": 2**53, "d": [1, big], "e": 2**53}


def test_an_exact_integer_survives_the_server_and_a_transform(root):
    app, server = serving(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = httpx.post(f"http://127.0.0.1:{server.server_address[1]}/api/w/{WS}/jobs/run_wait_result/f/f/t/echo",
                       content=b'{"x": {"amount": 9007199254740993}}')
        assert r.status_code == 200 and r.text == '{"amount": 9007199254740993}'
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- job records


def test_job_records_are_bounded_and_never_drop_a_waiting_job(root):
    script(root, "gate", "import threading\nGATE = threading.Event()\n\ndef main():\n    GATE.wait(60)\n    return 1\n")
    flow(root, "gated", {"modules": [{"id": "g", "value": {"type": "script", "path": "f/t/gate",
                                                            "input_transforms": {}}}]})
    app, server = serving(root, keep_results=3)
    try:
        done = [app.run("f/t/echo", {"x": i}, None)["id"] for i in range(5)]
        waiting = [app.submit("f/t/gated", {}, None) for _ in range(6)]  # 2 run, 4 queue behind them
        for i in range(5):  # more completions push the oldest completed records out
            app.run("f/t/echo", {"x": i}, None)
        assert app.completed == 3 and all(app.job_view(j) for j in waiting)
        assert [app.job_view(j) for j in done] == [None] * 5
        import f.t.gate as gate  # noqa: PLC0415 - the runner imported it from `root`
        gate.GATE.set()
        app.queue.join()
        views = [app.job_view(j) for j in waiting]
        assert app.completed == 3 and [v["result"] for v in views if v] == [1, 1, 1]
    finally:
        server.server_close()


# ---------------------------------------------------------------- what JavaScript is given


EXPRESSIONS = ["flow_input.a ?? null", "flow_input?.b.c + 1", 'flow_input.hasOwnProperty("a")', "Object.keys(flow_input)",
               "results.x.y * 2", "results.x", "flow_input.zz ?? 7", "[flow_input.a, results.x.y, previous_result]",
               "flow_input.b && flow_input.b.c", 'flow_input["b"].c', "JSON.stringify(results)"]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_passed_through_or_narrowed_expressions_give_what_the_whole_scope_gives(expr):
    from local_runner import js, passthrough  # noqa: PLC0415
    scope = {"flow_input": {"a": 1, "b": {"c": 2}, "event": {"data": "x" * 1000}},
             "results": {"x": {"y": 3}, "z": [4]}, "previous_result": {"y": 3}}
    assert passthrough.evaluate(expr, scope) == js.evaluate(expr, scope)


def test_javascript_is_given_only_the_keys_an_expression_reads():
    from local_runner import passthrough  # noqa: PLC0415
    scope = {"flow_input": {"hubspot": None, "event": {"data": "x" * 1000}}, "results": {"normalize": {}},
             "previous_result": {}}
    assert passthrough.narrow("flow_input.hubspot ?? null", scope) == {"flow_input": {"hubspot": None}}
    assert passthrough.narrow("flow_input[key]", scope)["flow_input"] == scope["flow_input"]


def test_step_results_are_copied_as_json_would_give_them():
    """Runner._jsonable copies without serialising (a large delivery is not encoded at
    each step) but must give exactly what json.dumps-then-loads gives."""
    import datetime as dt  # noqa: PLC0415
    import decimal  # noqa: PLC0415
    import enum  # noqa: PLC0415

    from local_runner import runner  # noqa: PLC0415

    class Kind(str, enum.Enum):
        A = "a"

    class Level(enum.IntEnum):
        HIGH = 3

    value = {"a": {1: 2, True: 3, None: 4, 1.5: 5, Kind.A: Level.HIGH}, "t": (1, [2, (3,)]), "s": [{7}],
             "d": decimal.Decimal("1.10"), "when": dt.datetime(2026, 1, 1, 10, 0), "b": b"\xffab", "big": 2**64,
             "nan": float("inf"), "dup": {1: "int", "1": "str"}}
    copy = runner._jsonable(value)
    assert json.dumps(copy) == json.dumps(json.loads(json.dumps(value, default=runner._json_default)))
    assert copy["a"]["a"] == 3 and type(copy["a"]["a"]) is int  # the IntEnum value, plain, under its key "a"
    assert copy["t"] is not value["t"] and copy["dup"] == {"1": "str"}


def test_large_results_are_let_go_once_newer_jobs_complete(root):
    """A record's result counts against KEEP_JOBS_BYTES: a large result stays fetchable
    while it is the newest, and is released (not kept behind 2,000 records) after."""
    app, server = serving(root, keep_results=100)
    app.keep_bytes = 10_000
    try:
        big = app.run("f/t/echo", {"x": "y" * 50_000}, None)["id"]
        assert app.job_view(big)["result"] == "y" * 50_000  # the newest: kept whatever its size
        small = [app.run("f/t/echo", {"x": i}, None)["id"] for i in range(3)]
        assert app.job_view(big) is None and all(app.job_view(j) for j in small)
        assert app.kept_bytes == 3  # "0", "1", "2"
    finally:
        server.server_close()
