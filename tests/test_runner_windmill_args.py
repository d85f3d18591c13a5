"""The local runner does what a Windmill worker and API do with a job's arguments, so a
bundle defect that only Windmill would show fails here too (issue 10 items 1-3 and 8,
issue 11 item 2). Flows: tests/flows/f/wm.

Sources (windmill-labs/windmill):
- CR = backend/windmill-worker/src/common.rs@20db3a33 `transform_json`, `transform_json_value`
- ARGS = backend/windmill-api/src/args.rs@005fbdf8; HTA = http_trigger_args.rs@42e83f4d
- EX = backend/windmill-api-jobs/src/execution.rs@3e67f263 `run_flow`, `result_to_response`
- WF = backend/windmill-worker/src/worker_flow.rs (`payload_from_modules` copies the flow's
  failure_module into every branch and loop sub-flow; `has_triggered_error_handler`)
"""
import json
import threading
from pathlib import Path

import httpx
import pytest

from local_runner import Config, Runner
from local_runner.server import App, make_server

ROOT = Path(__file__).parent / "flows"
WS = "demo"
SECRET = "s3cr3t-value"


@pytest.fixture
def config():
    return Config(variables={"f/wm/secret": SECRET, "f/wm/other": "other"},
                  resources={"f/wm/db": {"host": "db.local", "password": "$var:f/wm/secret"}}, workspace=WS)


@pytest.fixture
def runner(config):
    return Runner(ROOT, config, sleep=lambda s: None)


def shown(runner, **inputs):
    run = runner.run_flow("f/wm/args", inputs)
    return run.success, run.result


# -- argument resolution (CR)

def test_a_gated_argument_resolves_variables_resources_and_reserved_names(runner):
    ok, result = shown(runner, gated={"a": "$var:f/wm/secret", "db": "$res:f/wm/db", "me": "$WM_WORKSPACE",
                                      "unknown": "$NOT_RESERVED", "price": "$9.99", "mid": "x $var:f/wm/secret",
                                      "$var:f/wm/secret": "keys are untouched"})
    assert ok, result
    assert result["gated"] == {"a": SECRET, "db": {"host": "db.local", "password": SECRET}, "me": WS,
                               "unknown": "$NOT_RESERVED", "price": "$9.99", "mid": "x $var:f/wm/secret",
                               "$var:f/wm/secret": "keys are untouched"}


def test_only_arguments_whose_json_matches_the_gate_are_walked(runner):
    # `$WM_TOKEN` alone does not match \$(?:var|res|encrypted)\: : that argument is passed as is,
    # while the same string in an argument that matches is substituted
    ok, result = shown(runner, ungated={"token": "$WM_TOKEN"}, gated={"token": "$WM_TOKEN", "x": "$var:f/wm/other"})
    assert ok, result
    assert result["ungated"] == {"token": "$WM_TOKEN"}
    assert result["gated"]["token"].startswith("wm_job_") and result["gated"]["x"] == "other"


def test_arrays_are_walked_only_to_depth_two_and_1000_items(runner):
    v = "$var:f/wm/other"
    ok, result = shown(runner, gated={"d1": [v], "d2": {"x": [v]}, "d3": {"x": {"y": [v]}},
                                      "nested": [[v]], "deep": [[[v]]], "big": [v] * 1001, "max": [v] * 1000})
    assert ok, result
    g = result["gated"]
    assert g["d1"] == ["other"] and g["d2"] == {"x": ["other"]} and g["nested"] == [["other"]]
    assert g["d3"] == {"x": {"y": [v]}}   # an array at depth 3 is not walked
    assert g["deep"] == [[[v]]]  # the innermost array sits at depth 3
    assert g["big"] == [v] * 1001 and g["max"] == ["other"] * 1000


def test_objects_are_walked_at_any_depth(runner):
    value = "$var:f/wm/other"
    for _ in range(60):
        value = {"k": value}
    ok, result = shown(runner, gated=value)
    assert ok, result
    leaf = result["gated"]
    while isinstance(leaf, dict):
        leaf = leaf["k"]
    assert leaf == "other"


def test_encrypted_values_are_decrypted_and_garbage_fails_the_job(runner, config):
    ok, result = shown(runner, gated={"e": config.encrypt({"api_key": "k"})})
    assert ok and result["gated"] == {"e": {"api_key": "k"}}
    ok, result = shown(runner, gated={"e": "$encrypted:not-a-ciphertext"})
    assert not ok and result["error"]["name"] == "InternalErr"


@pytest.mark.parametrize("value, message", [
    ("$var:f/wm/missing", "Not found: Variable f/wm/missing not found for `customer`: 404 variable not found"),
    ("$res:f/wm/missing", "Not found: Resource f/wm/missing not found for `customer`: 404 resource not found"),
    ("$res:nopath", "Internal: Argument `customer` is an invalid resource path: nopath"),
])
def test_a_missing_path_fails_the_job_before_its_code_runs(runner, value, message):
    run = runner.run_flow("f/wm/args", {"gated": {"data": {"customer": value}}})
    assert not run.success
    assert run.result == {"error": {"name": "InternalErr", "message": message}}
    assert [j.kind for j in run.jobs] == ["flow", "script"]


def test_the_preprocessor_event_is_resolved_headers_and_body_included(runner):
    event = {"kind": "http", "body": {"name": "$var:f/wm/secret"}, "raw_string": '{"name": "$var:f/wm/secret"}',
             "headers": {"webhook-timestamp": "$var:f/wm/secret", "x-token": "$WM_TOKEN"}, "query": {}}
    run = runner.run_flow("f/wm/pre", event=event)
    assert run.success, run.result
    seen = run.result["inputs"]["seen"]
    assert seen["body"] == {"name": SECRET} and seen["headers"]["webhook-timestamp"] == SECRET
    assert seen["headers"]["x-token"].startswith("wm_job_")
    assert seen["raw_string"] == event["raw_string"]  # starts with `{`: never resolved
    event["body"] = {"name": "$var:f/wm/missing"}
    run = runner.run_flow("f/wm/pre", event=event)
    assert not run.success and "Variable f/wm/missing not found for `name`" in run.result["error"]["message"]


# -- the failure module in each failing branch and loop iteration (WF)

def test_the_failure_module_runs_inside_each_failing_branch_with_the_inner_step_id(runner):
    run = runner.run_flow("f/wm/branch_failures", {"order": 7})
    assert not run.success
    failures = [j for j in run.jobs if j.kind == "failure"]
    assert sorted(j.result["step_id"] for j in failures) == ["first_broken", "second_broken"]
    assert sorted(j.result["message"] for j in failures) == ["one", "two"]
    assert all(j.result["flow_input"] == {"order": 7} for j in failures)
    branch_jobs = {j.id: j for j in run.jobs if j.kind == "flowpreview"}
    assert all(j.parent in branch_jobs for j in failures)  # each inside its branch's sub-flow job
    assert not any(j.parent == run.id for j in failures)   # and the flow's own does not run again


def test_the_failure_module_runs_inside_a_failing_loop_iteration(runner):
    run = runner.run_flow("f/wm/loop_failures", {"order": 8})
    assert not run.success
    failures = [j for j in run.jobs if j.kind == "failure"]
    assert [(j.result["step_id"], j.result["message"]) for j in failures] == [("inner", "iteration 1")]
    assert failures[0].result["flow_input"] == {"order": 8, "iter": {"index": 0, "value": 1}}


# -- the API: preprocessor on API calls, 422, event shapes (EX, ARGS, HTA)

@pytest.fixture
def serve(runner):
    app = App(runner, workers=2, queue_size=10)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}", timeout=30) as client:
        yield client
    server.shutdown()
    server.server_close()


def test_a_script_calling_jobs_run_gets_the_preprocessor_unless_skip_preprocessor(runner):
    via_api = runner.run_script("f/wm/call_api", {"path": "f/wm/pre", "args": {"event": {"x": 1}}})
    assert via_api.success, via_api.result
    seen = via_api.result["result"]["inputs"]["seen"]
    assert seen == {"kind": "webhook", "body": {"event": {"x": 1}}, "raw_string": None, "headers": {}, "query": {}}
    skipped = runner.run_script("f/wm/call_api", {"path": "f/wm/pre", "args": {"event": {"x": 1}},
                                                  "query": "skip_preprocessor=true"})
    assert skipped.result["result"] == {"inputs": {"event": {"x": 1}}, "gated": None, "ungated": None}


def test_a_job_reads_a_variable_over_http_with_its_own_token(runner):
    run = runner.run_script("f/wm/call_api", {"variable": "f/wm/other"})
    assert run.result == {"status": 200, "text": '"other"'}
    run = runner.run_script("f/wm/call_api", {"variable": "f/wm/missing"})
    assert run.result["status"] == 404


def test_a_failed_sync_run_answers_422_with_its_result(serve):
    r = serve.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/wm/branch_failures", json={})
    assert r.status_code == 422
    # a failed branchall's result: its branches' results, each failing one its failure module's
    assert sorted(b["step_id"] for b in r.json() if "step_id" in b) == ["first_broken", "second_broken"]
    assert serve.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/wm/args", json={}).status_code == 200


def test_webhook_event_headers_only_include_header_first_value_and_include_query_only(serve):
    r = serve.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/wm/pre?include_header=X-Sig&include_query=a&b=2&a=1",
                   content=b"[1, 2]", headers=[("content-type", "application/json"), ("x-sig", "first"),
                                               ("x-sig", "second"), ("x-other", "no")])
    assert r.status_code == 200, r.text
    assert r.json()["inputs"]["seen"] == {"kind": "webhook", "body": [1, 2], "raw_string": None,
                                          "headers": {"x_sig": "first"}, "query": {"a": "1"}}


@pytest.mark.parametrize("body, ctype", [(b"", "application/json"), (b"not json", "application/json"),
                                         (b"{\"a\": ", "application/json; charset=utf-8")])
def test_an_empty_or_invalid_json_body_is_400_before_any_job(serve, runner, body, ctype):
    for url in (f"/api/w/{WS}/jobs/run/f/f/wm/pre?raw=true", "/api/r/wm/pre/1"):
        r = serve.post(url, content=body, headers={"content-type": ctype})
        assert r.status_code == 400 and r.text
    assert runner.list_jobs({}) == []


def test_an_http_route_event_lower_case_method_all_headers_and_query(serve):
    r = serve.post("/api/r/wm/pre/42?q=1&q=2", content=b'"just a string"',
                   headers={"content-type": "application/json", "X-Sig": "v"})
    assert r.status_code == 200, r.text
    seen = r.json()["inputs"]["seen"]
    assert seen["kind"] == "http" and seen["method"] == "post" and seen["body"] == "just a string"
    assert seen["raw_string"] == '"just a string"' and seen["params"] == {"item": "42"}
    assert seen["query"] == {"q": "2"} and seen["headers"]["x-sig"] == "v"
    assert seen["route"] == "wm/pre/:item" and "trigger_path" not in seen


def test_skip_preprocessor_on_the_webhook_url_passes_the_body_keys(serve):
    r = serve.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/wm/args?skip_preprocessor=true", json={"gated": 1})
    assert r.json()["gated"] == 1
    r = serve.post(f"/api/w/{WS}/jobs/run_wait_result/f/f/wm/pre?skip_preprocessor=true", json={"event": 2})
    assert r.json()["inputs"] == {"event": 2}


def test_the_job_history_lists_failed_runs_with_their_arguments(runner):
    runner.run_flow("f/wm/args", {"gated": 1})
    failed = runner.run_flow("f/wm/pre", event={"kind": "webhook", "body": {"n": "$var:f/wm/missing"},
                                                "raw_string": "{}", "headers": {}, "query": {}})
    listed = runner.list_jobs({"script_path_exact": "f/wm/pre", "success": "false", "include_args": "true"})
    assert [j["id"] for j in listed] == [failed.id]
    assert listed[0]["args"]["event"]["body"] == {"n": "$var:f/wm/missing"}  # as created, unresolved
    assert "args" not in runner.list_jobs({"success": "false"})[0]
    assert json.dumps(runner.list_jobs({"success": "true"})).count('"f/wm/args"') == 1
