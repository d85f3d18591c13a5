"""The local runner against small flows with known Windmill outcomes (tests/flows/f/rt).

Sources cited as WF = windmill-labs/windmill backend/windmill-worker/src/worker_flow.rs
(update_flow_status_after_job_completion_internal, push_next_flow_job, next_retry,
compute_skip_branchall_failure, get_stop_after_if_data), OA = openflow.openapi.yaml /
the generated windmill-api models (docs.rs windmill-api), DOCS = windmill.dev/docs.
"""
from pathlib import Path

import pytest

from local_runner import Config, Runner, UnsupportedFlow

ROOT = Path(__file__).parent / "flows"


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def runner(sleeps):
    cfg = Config(variables={"f/rt/secret": "s3cr3t", "f/rt/token": "tok", "f/rt/pw": "hunter2"},
                 resources={"f/rt/db": {"host": "db.local", "password": "$var:f/rt/pw"}})
    return Runner(ROOT, cfg, sleep=sleeps.append, random=lambda: 0.5)


def kinds(run):
    return [j.kind for j in run.jobs]


# DOCS flows/branches: "the branch will be executed if its condition is true, otherwise
# the default branch"; WF push_next_flow_job BranchOne: predicates in order, first true
# wins (break), the chosen modules run as one RawFlow sub-flow job whose result is the
# module's result (read as results.<branchone id>).
@pytest.mark.parametrize("n, label", [(20, "big"), (5, "positive"), (-1, "other:-1")])
def test_branchone_first_true_wins_else_default(runner, n, label):
    run = runner.run_flow("f/rt/branchone", {"n": n})
    assert run.success
    assert run.result == [label, label]
    assert kinds(run) == ["flow", "flowpreview", "script", "script"]


# WF push_next_flow_job BranchOne: payload_from_modules(.., opt_empty_inner_flows=true)
# returns None for a chosen branch without modules, so no job is pushed
# (EmptyInnerFlows): the module is marked Success with flow_jobs [] and its result, the
# results of those flow jobs, is []. A non-empty branch still runs as one sub-flow job.
def test_an_empty_branchone_branch_creates_no_job(runner):
    run = runner.run_flow("f/rt/branchone_empty", {"n": 1})
    assert run.success and run.result == [[], []]
    assert kinds(run) == ["flow", "script"]
    other = runner.run_flow("f/rt/branchone_empty", {"n": -1})
    assert other.result == ["other", "other"]
    assert kinds(other) == ["flow", "flowpreview", "script", "script"]


# WF: parallel branchall completes when every branch is done; it succeeds when every
# branch without skip_failure succeeded (compute_skip_branchall_failure), and its result
# is retrieve_flow_jobs_results: one entry per branch in order, a failed branch's entry
# being that job's error result.
def test_branchall_parallel_skip_failure_keeps_error_in_results(runner):
    run = runner.run_flow("f/rt/branchall")
    assert run.success
    one, broken, two = run.result
    assert (one, two) == (11, 5)
    assert broken["error"]["name"] == "ValueError"
    assert broken["error"]["message"] == "branch broke"
    assert kinds(run).count("flowpreview") == 3


# WF (worker_flow.rs@8f7d467e update_flow_status_after_job_completion_internal): a branch
# without skip_failure that fails makes the module fail, and the module's result - the
# flow's, without a failure module - is retrieve_flow_jobs_results: the array of the
# branch jobs' results so far, the failed one being its error result.
def test_branchall_failure_without_skip_fails_flow(runner):
    run = runner.run_flow("f/rt/branchall_fail")
    assert not run.success
    one, broken = run.result
    assert one == 11
    assert broken["error"]["message"] == "no skip" and broken["error"]["step_id"] == "broken"


# OA Retry: constant {attempts, seconds} = number of retries after the first run; WF
# next_retry/Retry::interval: each retry is a new job, the delay is constant.seconds.
def test_retry_constant_counts_attempts(runner, sleeps):
    run = runner.run_flow("f/rt/retry_constant", {"nonce": "c1", "fail_times": 2})
    assert run.success and run.result == 3
    assert [j.attempt for j in run.jobs if j.kind == "script"] == [0, 1, 2]
    assert sleeps == [5, 5]


def test_retry_constant_exhausted_fails_with_last_error(runner, sleeps):
    run = runner.run_flow("f/rt/retry_constant", {"nonce": "c2", "fail_times": 9})
    assert not run.success
    assert run.result["error"]["message"] == "attempt 3 failed"
    assert len([j for j in run.jobs if j.kind == "script"]) == 3


# docs.rs windmill-api RetryExponential: "the n-th retry waits multiplier x seconds^n,
# where n counts constant retries too"; random_factor is a +/- percentage jitter.
def test_retry_exponential_delays(runner, sleeps):
    run = runner.run_flow("f/rt/retry_exponential", {"nonce": "e1", "fail_times": 9})
    assert not run.success
    assert sleeps == [6, 18, 54]
    assert len([j for j in run.jobs if j.kind == "script"]) == 4


# OA Retry.retry_if / RetryIf: "JavaScript expression that returns true to retry. Has
# access to 'result' and 'error' variables". WF evaluate_retry (windmill-labs/windmill
# 8f7d467): on each failure, before Retry::interval, `compute_bool_from_expr(retry_if.expr,
# flow_args, .., result)` evaluates Boolean(expr) with result = previous_result = the
# failed job's result; windmill-jseval eval_quickjs_inner binds `error =
# previous_result?.error`. False -> Ok(None): no retry, and should_continue_flow goes to
# the failure module. The Python wrapper (python_executor.rs) names the error after the
# exception class: "name": e.__class__.__name__.
def test_retry_if_false_fails_the_step_at_once_and_runs_the_failure_module(runner, sleeps):
    run = runner.run_flow("f/rt/retry_if", {"nonce": "ri1", "errors": ["RuntimeError", "PermissionError"]})
    assert not run.success
    assert [j.attempt for j in run.jobs if j.kind == "script"] == [0, 1]  # retried once, then not
    assert sleeps == [1]
    assert kinds(run)[-1] == "failure"
    assert run.result == {"name": "PermissionError", "message": "attempt 2: PermissionError", "step": "picky"}


def test_retry_if_true_retries_within_the_attempts(runner, sleeps):
    ok = runner.run_flow("f/rt/retry_if", {"nonce": "ri2", "errors": ["KeyError", "OSError"]})
    assert ok.success and ok.result == 3 and sleeps == [1, 1]
    sleeps.clear()
    spent = runner.run_flow("f/rt/retry_if", {"nonce": "ri3", "errors": ["RuntimeError"] * 9})
    assert not spent.success and spent.result["message"] == "attempt 4: RuntimeError"
    assert len([j for j in spent.jobs if j.kind == "script"]) == 4 and sleeps == [1, 1, 1]


def test_retry_if_false_on_the_first_failure_never_retries(runner, sleeps):
    run = runner.run_flow("f/rt/retry_if", {"nonce": "ri4", "errors": ["PermissionError"]})
    assert kinds(run) == ["flow", "script", "failure"] and sleeps == []


# DOCS flows/early_stop + OA StopAfterIf: evaluated after the step with `result` in scope;
# WF: the flow stops, completes successfully with the stopping step's result, labelled
# skipped when skip_if_stopped; later steps never run.
def test_stop_after_if_stops_with_step_result(runner):
    run = runner.run_flow("f/rt/stop", {"x": "dup"})
    assert run.success and run.skipped
    assert run.result == "dup"
    assert kinds(run) == ["flow", "script"]
    go = runner.run_flow("f/rt/stop", {"x": "new"})
    assert go.success and not go.skipped and go.result == "after"


# OA StopAfterIf.error_message: "If set to a non-empty string, the flow stops with this
# error"; WF (worker_flow.rs@8f7d467e): the module fails with {"error": {name:
# "EarlyStopError", message}} and should_continue_flow = stop_early_err_msg.is_some() &&
# failure_module.is_some(): the failure module runs, later steps never do.
def test_stop_after_if_error_message_fails_and_runs_the_failure_module(runner):
    run = runner.run_flow("f/rt/stop_error", {"x": "dup"})
    assert not run.success
    assert kinds(run) == ["flow", "script", "failure"]
    assert run.result == "handler ran"
    no_handler = runner.run_flow_value({"modules": runner.load_flow("f/rt/stop_error")["value"]["modules"]},
                                       {"x": "dup"})
    assert not no_handler.success
    assert no_handler.result == {"error": {"name": "EarlyStopError", "message": "duplicate delivery"}}


# WF: a step whose skip_if is true runs as an identity job (status skipped) that passes
# previous_result through.
def test_skip_if_runs_identity(runner):
    run = runner.run_flow("f/rt/skip")
    assert run.success and run.result == 11
    assert kinds(run) == ["flow", "script", "identity"]


# DOCS flows/error_handling: the error handler takes the failed step's result (its error
# in `error`); WF: after the failure module the flow is still a failure unless the module
# returns {recover: true}, and the flow's result is the failure module's result.
def test_failure_module_result_and_status(runner):
    run = runner.run_flow("f/rt/failure")
    assert not run.success
    assert run.result == {"handled": "kaput", "name": "ValueError", "step": "b", "recover": False}
    assert kinds(run) == ["flow", "script", "script", "failure"]  # step c never ran


def test_failure_module_recover_true_succeeds(runner):
    run = runner.run_flow("f/rt/failure", {"recover": True})
    assert run.success and run.result["recover"] is True


# OA ForloopFlow {iterator, skip_failures, parallel}; WF: each iteration gets
# flow_input.iter = {index, value}; the result is the list of iteration results in order;
# with skip_failures a failed iteration's entry is its error result. WF
# compute_next_flow_transform: is_simple = !FlowPreview && !parallel && is_simple_modules,
# so a parallel loop pushes one sub-flow job per iteration even for a single script.
def test_forloop_parallel_skip_failures(runner):
    run = runner.run_flow("f/rt/forloop", {"items": [1, -2, 3]})
    assert run.success
    assert run.result[0] == 2 and run.result[2] == 6
    assert run.result[1]["error"]["message"] == "negative at 1"
    assert sorted(kinds(run)) == sorted(["flow"] + ["flowpreview", "rawscript"] * 3)


# DOCS flows/flow_preprocessor + WF PreprocessorStep: the preprocessor gets the trigger
# `event`; its object result replaces the flow args; UI runs skip it.
def test_preprocessor_webhook_event_becomes_inputs(runner):
    event = {"kind": "webhook", "body": {"a": 1}, "raw_string": '{"a": 1}', "query": {},
             "headers": {"webhook_signature": "v1,xyz"}}
    run = runner.run_flow("f/rt/preprocessor", event=event)
    assert run.success
    assert run.result == {"kind": "webhook", "body": {"a": 1}, "raw": '{"a": 1}', "signature": "v1,xyz"}
    assert kinds(run) == ["flow", "preprocessor", "script"]


def test_preprocessor_http_event_and_ui_run(runner):
    event = {"kind": "http", "trigger_path": "f/rt/t", "route": "hook", "path": "hook", "method": "POST",
             "params": {}, "query": {}, "headers": {"webhook-signature": "v1,h"}, "body": [1],
             "raw_string": "[1]"}
    run = runner.run_flow("f/rt/preprocessor", event=event)
    assert run.result["kind"] == "http" and run.result["body"] == [1]
    ui = runner.run_flow("f/rt/preprocessor", {"pasted": True})
    assert ui.result == {"pasted": True} and "preprocessor" not in kinds(ui)


# A flow step by path is its own flow job (DOCS: each flow or subflow is a job).
def test_subflow_by_path(runner):
    run = runner.run_flow("f/rt/subflow", {"n": 3})
    assert run.success and run.result == ["positive", "positive"]
    assert kinds(run).count("flow") == 2


# OA FlowModule.continue_on_error; WF: the flow goes on, the step's result is its error.
def test_continue_on_error(runner):
    run = runner.run_flow("f/rt/continue")
    assert run.success and run.result == "ignored"


def test_variables_resources_state_progress(runner):
    run = runner.run_flow("f/rt/secrets")
    assert run.success, run.result
    # $var: static input resolved; resources interpolate their $var: fields
    assert run.result == {"token": "tok", "variable": "s3cr3t", "db_host": "db.local", "db_password": "hunter2"}
    script_job = run.jobs[-1]
    assert runner.progress[script_job.id] == 50


@pytest.mark.parametrize("path, key", [("f/rt/unknown_key", "suspend"), ("f/rt/unknown_type", "aiagent")])
def test_unknown_keys_are_refused(runner, path, key):
    with pytest.raises(UnsupportedFlow, match=key):
        runner.run_flow(path)


def test_every_job_is_logged_with_parent_and_root(runner):
    run = runner.run_flow("f/rt/branchone", {"n": 1})
    root = run.jobs[0]
    assert root.id == run.id and root.parent is None
    assert all(j.root == run.id for j in run.jobs)
    branch = run.jobs[1]
    assert run.jobs[2].parent == branch.id and branch.parent == root.id


def nested(depth: int, leaf):
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def depth_and_leaf(value) -> tuple[int, object]:
    depth = 0
    while isinstance(value, dict):
        value, depth = value["a"], depth + 1
    return depth, value


# A trigger body nested deeper than Python's recursion limit (attack tests: ~600 levels
# through the server) must reach the preprocessor, whose own checks reject it with their
# documented error: the runner's argument handling (JSON copies of results, the
# expression scope) walks it without recursion. An argument holding `$var:`-like text is
# parsed by the worker with serde_json (common.rs `transform_json`), whose recursion limit
# refuses a 128th level: that job fails before its code runs.
def test_a_deeply_nested_trigger_body_reaches_the_preprocessor_and_the_steps(runner):
    body = nested(3000, "plain text")
    event = {"kind": "webhook", "body": body, "raw_string": "{}", "query": {}, "headers": {}}
    run = runner.run_flow("f/rt/preprocessor", event=event)
    assert run.success, run.result
    assert kinds(run) == ["flow", "preprocessor", "script"]
    assert depth_and_leaf(run.result["body"]) == (3000, "plain text")
    event["body"] = nested(3000, "$var:f/rt/token")
    run = runner.run_flow("f/rt/preprocessor", event=event)
    assert not run.success and kinds(run) == ["flow", "preprocessor"]
    assert run.result["error"] == {"name": "InternalErr",
                                   "message": "Internal: Error while parsing inner arg: recursion limit exceeded"}


def test_deep_json_codec_matches_json_and_has_no_depth_limit():
    import json

    from local_runner import deep
    shallow = {"a": [1, 2.5, None, True, "é\"\n", {"b": []}], "": {}, "n": -3}
    assert deep._dumps_iterative(shallow, str) == json.dumps(shallow)
    assert deep._loads_iterative(json.dumps(shallow, indent=2)) == shallow
    text = '{"a": ' * 50_000 + '[1, "x"]' + "}" * 50_000
    value = deep.loads(text)
    assert depth_and_leaf(value) == (50_000, [1, "x"])
    assert deep.dumps(value) == text
    with pytest.raises(json.JSONDecodeError):
        deep._loads_iterative('{"a": [1 2]}')
