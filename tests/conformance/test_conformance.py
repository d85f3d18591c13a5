"""Windmill's own flow tests, run on the local runner.

Each file in cases/ holds the cases taken from one Windmill test file (its `source`: file
and commit), each case naming its Windmill test and carrying the flow (or job, or
expression), its arguments and the expected result - the Rust test's own assertion,
either as the exact value (`result`) or as its predicate in JavaScript (`check`, with
`result` and `success` in scope). A case the runner refuses names the refusal it must get
(`refused`); nothing is expected to fail. A case marked `postgres` runs its postgresql job
against the session's Postgres server (tests/conftest.py), in place of the `database` Windmill's
test names. `excluded` lists, per file, the tests that hold no
flow the runner could express, with the reason. README.md ("Conformance with Windmill")
gives the counts and the refusals.
"""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
import quickjs
import yaml

from local_runner import Config, Runner, UnsupportedFlow, js

CASES = Path(__file__).parent / "cases"


def _documents():
    for file in sorted(CASES.glob("*.yaml")):
        yield file, yaml.safe_load(file.read_text())


def _cases():
    for file, doc in _documents():
        seen: dict[str, int] = {}
        for case in doc["cases"]:
            name = case["test"] + (f"[{case['variant']}]" if case.get("variant") else "")
            seen[name] = seen.get(name, 0) + 1
            assert seen[name] == 1, f"{file.name}: two cases named {name}"
            yield pytest.param(doc["source"], case, id=f"{file.stem}::{name}")


def expected_refusal(case) -> str | None:
    return case.get("refused")


class ScriptedTcpServer:
    """retry.rs `Server`: per connection, read one byte, then answer with the next scripted
    byte or close without answering; records the bytes it read."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.received: list[int] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for reply in self.responses:
            try:
                peer, _ = self.sock.accept()
            except OSError:
                return
            with peer:
                data = peer.recv(1)
                if data:
                    self.received.append(data[0])
                if reply is not None:
                    peer.sendall(bytes([reply]))

    def close(self):
        self.sock.close()


def _substitute(value, port):
    if isinstance(value, str) and value == "{{port}}":
        return port
    if isinstance(value, dict):
        return {k: _substitute(v, port) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, port) for v in value]
    return value


def _write_repo(root: Path, case) -> None:
    """The case's fixture scripts and flows (Windmill: tests/fixtures/*.sql) as files."""
    ext = {"python3": "py", "deno": "ts", "bun": "ts", "nativets": "ts", "bunnative": "ts"}
    for path, script in (case.get("scripts") or {}).items():
        file = root / f"{path}.{ext[script['language']]}"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(script["content"])
    for path, value in (case.get("flows") or {}).items():
        file = root / f"{path}__flow" / "flow.yaml"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(yaml.safe_dump({"summary": "", "value": value}))


def _check(expr: str, result, success) -> bool:
    ctx = quickjs.Context()
    fn = ctx.eval("(function(r, s) { const result = JSON.parse(r); const success = s; return Boolean("
                  f"{expr}); }})")
    return fn(json.dumps(result), success)


def _run_one(runner: Runner, case, run: dict):
    kind = case.get("kind", "flow")
    args = run.get("args") or {}
    if kind == "flow" and case.get("path"):
        event = {} if case.get("preprocess") else None
        return runner.run_flow(case["path"], args, event=event)
    if kind == "flow":
        return runner.run_flow_value(case["flow"], args, path=f"conformance/{case['test']}")
    if kind == "code":
        return runner.run_code(case["language"], case["content"], args)
    if kind == "script":
        return runner.run_script(case["path"], args, preprocess=bool(case.get("preprocess")))
    raise AssertionError(f"unknown case kind {kind}")


def _assert_run(outcome, run: dict, where: str):
    if "success" in run:
        assert outcome.success is run["success"], f"{where}: success {outcome.success}, result {outcome.result!r}"
    if "result" in run:
        assert outcome.result == run["result"], f"{where}: result {outcome.result!r}"
    if "check" in run:
        assert _check(run["check"], outcome.result, outcome.success), \
            f"{where}: `{run['check']}` is false for result {outcome.result!r}"
    assert {"result", "check"} & set(run), f"{where}: a run must state its expected result"


@pytest.mark.parametrize("source, case", list(_cases()))
def test_windmill_case(source, case, tmp_path, request):
    where = f"{source['file']}@{source['commit'][:8]} {case['test']}"
    kind = case.get("kind", "flow")
    if kind == "expressions":
        return _expressions(case, where)
    if kind == "helper":
        fn = getattr(js, case["function"])
        for arg, expected in case["calls"]:
            args = arg if case.get("spread") else [arg]
            assert fn(*args) == expected, f"{where}: {case['function']}({arg!r})"
        return
    _write_repo(tmp_path, case)
    sleeps: list[float] = []
    config = Config(variables=dict(case.get("variables") or {}), resources=dict(case.get("resources") or {}))
    runner = Runner(tmp_path, config, sleep=sleeps.append, random=lambda: 0.5)
    refusal = expected_refusal(case)
    for i, run in enumerate(case["runs"]):
        server = ScriptedTcpServer(run["tcp"]) if "tcp" in run else None
        try:
            if server:
                run = dict(run, args=_substitute(run.get("args") or {}, server.port))
            if case.get("postgres"):  # a postgresql job: its `database` is this session's real server
                run = dict(run, args={**(run.get("args") or {}), "database": _session_postgres(request)})
            if refusal:
                with pytest.raises(UnsupportedFlow, match=refusal):
                    _run_one(runner, case, run)
                return
            outcome = _run_one(runner, case, run)
        finally:
            if server:
                server.close()
        _assert_run(outcome, run, f"{where} run {i}")
        if server and "received" in run:
            assert server.received == run["received"], f"{where} run {i}: the steps sent {server.received}"
        if "sleeps" in run:
            assert sleeps == run["sleeps"], f"{where} run {i}: slept {sleeps}"


def _session_postgres(request) -> dict:
    from f.dodo.lib.db import dsn_to_resource  # noqa: PLC0415

    return dict(dsn_to_resource(request.getfixturevalue("pg_url")))


def _expressions(case, where):
    context = case.get("context") or {}
    kw = {"flow_input": case.get("flow_input"), "flow_env": case.get("flow_env")}
    for expr, expected in case.get("evals") or []:
        assert js.evaluate(expr, context, **kw) == expected, f"{where}: `{expr}`"
    for expr in case.get("raises") or []:
        with pytest.raises(js.ExpressionError):
            js.evaluate(expr, context, **kw)


def test_every_windmill_test_is_a_case_or_excluded_with_a_reason():
    for file, doc in _documents():
        tests = set(doc["source"]["tests"])
        covered = {c["test"] for c in doc["cases"]} | set(doc.get("excluded") or {})
        assert tests == covered, f"{file.name}: not covered {sorted(tests - covered)}, unknown {sorted(covered - tests)}"
        assert all(doc["excluded"][t] for t in doc.get("excluded") or {}), f"{file.name}: an exclusion without reason"


def test_readme_counts_match_the_cases():
    """README's "Conformance with Windmill" table is the suite's own count."""
    cases = [c for _, doc in _documents() for c in doc["cases"]]
    refused = sum(1 for c in cases if c.get("refused"))
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme[readme.index("## Conformance with Windmill"):]
    assert f"| refused by name, with the reason | {refused} |" in table
    assert f"| pass (Python, Bun TypeScript and PostgreSQL steps, expressions) | {len(cases) - refused} |" in table
    assert f"| total | {len(cases)} |" in table
