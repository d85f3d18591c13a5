"""`make serve` driven over real HTTP with httpx: Windmill's URL shapes and argument mapping.

Shapes: POST /api/w/{ws}/jobs/run/f/{path} answers 201 with the job uuid as text;
/jobs/run_wait_result/f/{path} answers the result; jobs_u/completed/get_result/{id}
returns a finished job's result (windmill-api openapi.yaml). Mapping: args.rs (see
platform-facts.md "Exact argument mapping").
"""
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from local_runner import Config, Runner
from local_runner.server import DEFAULT_READ_TIMEOUT_S, App, make_server

ROOT = Path(__file__).parent / "flows"
WS = "demo"


def start(token=None):
    app = App(Runner(ROOT, Config(workspace=WS)), token=token, workers=2, queue_size=10)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return app, server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def srv():
    app, server, base = start()
    with httpx.Client(base_url=base) as client:
        yield app, client
    server.shutdown()
    server.server_close()


def wait_result(client, job_id):
    deadline = time.monotonic() + 30  # a bound against hangs, not a speed assertion
    while time.monotonic() < deadline:
        r = client.get(f"/api/w/{WS}/jobs_u/completed/get_result_maybe/{job_id}")
        assert r.status_code == 200
        if r.json()["completed"]:
            return r.json()
        time.sleep(0.01)
    raise AssertionError("job never completed")


SIGNED = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,abc"}
QS = "raw=true&include_header=webhook-id,webhook-timestamp,webhook-signature"


def test_async_run_returns_job_id_then_result(srv):
    app, client = srv
    body = b'{"type":"payment.succeeded",  "data": {"x": 1}}'
    r = client.post(f"/api/w/{WS}/jobs/run/f/f/rt/preprocessor?{QS}", content=body,
                    headers={**SIGNED, "content-type": "application/json"})
    assert r.status_code == 201 and r.headers["content-type"].startswith("text/plain")
    job_id = str(uuid.UUID(r.text))
    done = wait_result(client, job_id)
    assert done["success"]
    expected = {"kind": "webhook", "body": {"type": "payment.succeeded", "data": {"x": 1}},
                "raw": body.decode(), "signature": "v1,abc"}
    assert done["result"] == expected
    assert client.get(f"/api/w/{WS}/jobs_u/completed/get_result/{job_id}").json() == expected
    job = client.get(f"/api/w/{WS}/jobs_u/get/{job_id}").json()
    assert job["type"] == "CompletedJob" and job["success"] is True
    assert [j["kind"] for j in job["local_jobs"]] == ["flow", "preprocessor", "script"]


def test_sync_run_webhook_event_headers_only_included(srv):
    _, client = srv
    r = client.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/rt/preprocessor?include_header=webhook-signature",
                    content=b'{"a": 1}', headers={**SIGNED, "x-other": "no"})
    assert r.status_code == 200
    # without raw=true there is no raw_string; only the named header, renamed
    assert r.json() == {"kind": "webhook", "body": {"a": 1}, "raw": None, "signature": "v1,abc"}


def test_no_preprocessor_body_keys_raw_and_headers_become_args(srv):
    _, client = srv
    body = b'{"event": {"k": 1}}'
    r = client.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/rt/inputs?{QS}", content=body, headers=SIGNED)
    assert r.json() == {"event": {"k": 1}, "raw_string": body.decode(), "webhook_id": "msg_1",
                        "webhook_timestamp": "1700000000", "webhook_signature": "v1,abc"}


def test_non_object_json_arrives_as_body(srv):
    _, client = srv
    r = client.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/rt/inputs", content=b"[1, 2]")
    assert r.json() == {"body": [1, 2]}


@pytest.mark.parametrize("body", [b"not json", b'{"a": "\xff"}'])
def test_invalid_body_is_400_before_any_job(srv, body):
    app, client = srv
    before = len(app.jobs)
    r = client.post(f"/api/w/{WS}/jobs/run/f/f/rt/preprocessor?raw=true", content=body)
    assert r.status_code == 400
    assert len(app.jobs) == before


def test_unknown_workspace_and_flow_are_404(srv):
    _, client = srv
    assert client.post("/api/w/other/jobs/run/f/f/rt/inputs", content=b"{}").status_code == 404
    assert client.post(f"/api/w/{WS}/jobs/run/f/f/rt/missing", content=b"{}").status_code == 404
    assert client.get(f"/api/w/{WS}/jobs_u/completed/get_result/{uuid.uuid4()}").status_code == 404


def test_http_route_async_passes_all_headers_lower_case(srv):
    _, client = srv
    r = client.post("/api/r/rt/hook", content=b'{"b": 2}', headers={"Webhook-Signature": "v1,route"})
    assert r.status_code == 201
    done = wait_result(client, r.text)
    # http events keep header names (lower-cased, dashes kept): the preprocessor reads
    # webhook_signature, which an http event does not carry
    assert done["result"] == {"kind": "http", "body": {"b": 2}, "raw": '{"b": 2}', "signature": None}


def test_workspaced_sync_route_with_param(srv):
    _, client = srv
    r = client.post(f"/api/r/{WS}/rt/inputs/alice", content=b'{"x": 1}')
    assert r.status_code == 200 and r.json() == {"x": 1}
    assert client.post("/api/r/rt/inputs/alice", content=b"{}").status_code == 404


def test_token_required_when_set():
    app, server, base = start(token="t0ken")
    try:
        with httpx.Client(base_url=base) as client:
            url = f"/api/w/{WS}/jobs/run_wait_result/f/f/rt/inputs"
            assert client.post(url, content=b'{"x": 1}').status_code == 401
            assert client.post(url, content=b'{"x": 1}', headers={"authorization": "Bearer wrong"}).status_code == 401
            ok = client.post(url, content=b'{"x": 1}', headers={"authorization": "Bearer t0ken"})
            assert ok.status_code == 200 and ok.json() == {"x": 1}
            # ?token= works too and is not passed on as a query value
            assert client.post(f"{url}?token=t0ken", content=b'{"x": 2}').json() == {"x": 2}
    finally:
        server.shutdown()
        server.server_close()


def test_make_serve_has_the_bundle_variables_and_the_environment_s_integrations(make_db):
    from local_runner.server import build  # noqa: PLC0415

    repo = ROOT.parent.parent
    db = make_db("dodo")  # the schema serve migrates (the flows' own); dropped after the test
    app, pg = build(repo, {"DATABASE_URL": db.url, "HUBSPOT_TOKEN": "pat-serve"})
    assert pg is None  # DATABASE_URL given: no embedded server started
    cfg = app.runner.config
    # the webhook flow's static `$var:f/dodo/notify_routing` resolves to the shipped value
    assert '"rules"' in cfg.interpolate("$var:f/dodo/notify_routing")
    assert cfg.get_resource("f/dodo/hubspot") == {"token": "pat-serve"}
    assert cfg.get_resource("f/dodo/postgres")["dbname"] == db.resource["dbname"]
    assert "f/dodo/slack" not in cfg.resources  # unset: the outbox


# A client that declares a body and never sends it must not hold a server thread forever:
# each connection has a socket timeout (READ_TIMEOUT_S, default 30 s); past it the server
# answers 408 and closes the connection.
def test_a_body_that_never_comes_is_cut_off_with_408():
    app = App(Runner(ROOT, Config(workspace=WS)), workers=1, queue_size=10)
    server = make_server(app, "127.0.0.1", 0, read_timeout=0.3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address, timeout=20) as sock:  # 20 s: a hang guard
            sock.sendall(f"POST /api/w/{WS}/jobs/run/f/f/rt/preprocessor HTTP/1.1\r\nhost: x\r\n"
                         "content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":".encode())
            answer = b""
            while chunk := sock.recv(4096):  # ends when the server closes the connection
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert answer.endswith(b"request body not received in time")
        assert httpx.post(f"http://127.0.0.1:{server.server_address[1]}/api/w/{WS}/jobs/run_wait_result/f/f/rt/"
                          f"preprocessor?{QS}", content=b'{"a": 1}', headers=SIGNED).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_read_timeout_defaults_to_30_seconds():
    app = App(Runner(ROOT, Config(workspace=WS)), workers=1)
    server = make_server(app, "127.0.0.1", 0)
    try:
        assert server.RequestHandlerClass.timeout == DEFAULT_READ_TIMEOUT_S == 30
    finally:
        server.server_close()
