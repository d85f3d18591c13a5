"""TypeScript steps on the pinned Bun, as Windmill's bun executor runs them
(backend/windmill-worker/src/bun_executor.rs@01c3cfe, handle_bun_job's wrapper.mjs):
arguments by name from `main`'s signature, defaults for missing ones, a `Date` built
from its string, the result as JSON (undefined -> null, BigInt -> string), a thrown
error as {message, name, stack, step_id, extra}; `windmill-client` served by the local
API the Python client uses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from local_runner import Config, Runner

CLIENT_STEP = textwrap.dedent("""\
    import * as wmill from "windmill-client";

    export async function main(greeting: string, count = 2) {
      const secret = await wmill.getVariable("f/dodo/some_secret");
      const db = await wmill.getResource("f/dodo/postgres");
      const before = await wmill.getState();
      await wmill.setState({ seen: (before?.seen ?? 0) + count });
      return {
        greeting, count, secret_length: secret.length, host: db.host,
        state: await wmill.getState(), job_id: process.env.WM_JOB_ID,
        flow_job_id: process.env.WM_FLOW_JOB_ID, step: process.env.WM_FLOW_STEP_ID,
        workspace: process.env.WM_WORKSPACE, big: 2n ** 64n, missing: undefined,
      };
    }
""")


def write_flow(root: Path, name: str, modules: list[dict]) -> None:
    flow_dir = root / f"f/t/{name}__flow"
    flow_dir.mkdir(parents=True, exist_ok=True)
    (flow_dir / "flow.yaml").write_text(yaml.safe_dump({"summary": name, "value": {"modules": modules},
                                                        "schema": {"type": "object", "properties": {}}}))


def step(sid: str, content: str, transforms: dict, language: str = "bun") -> dict:
    return {"id": sid, "value": {"type": "rawscript", "language": language, "content": content,
                                 "input_transforms": transforms}}


def test_windmill_client_reaches_the_local_api(tmp_path):
    config = Config(variables={"f/dodo/some_secret": "s3cr3t!"},
                    resources={"f/dodo/postgres": {"host": "db.internal", "port": 5432}}, workspace="acme")
    write_flow(tmp_path, "client", [step("a", CLIENT_STEP, {"greeting": {"type": "static", "value": "hi"}})])
    runner = Runner(tmp_path, config)
    first = runner.run_flow("f/t/client", {})
    assert first.success, first.result
    flow_job, script_job = first.jobs
    assert first.result == {"greeting": "hi", "count": 2, "secret_length": 7, "host": "db.internal",
                            "state": {"seen": 2}, "job_id": script_job.id, "flow_job_id": flow_job.id,
                            "step": "a", "workspace": "acme", "big": "18446744073709551616", "missing": None}
    again = runner.run_flow("f/t/client", {})  # the step's state persists across runs, as on Windmill
    assert again.result["state"] == {"seen": 4}


def test_deno_style_script_by_path_with_defaults_and_dates(tmp_path):
    (tmp_path / "f/t").mkdir(parents=True)
    (tmp_path / "f/t/when.ts").write_text(textwrap.dedent("""\
        export async function main(name: string, when: Date, times = 3, tag?: string) {
          return { name, year: when.getUTCFullYear(), times, tag, isDate: when instanceof Date };
        }
    """))
    write_flow(tmp_path, "dated", [{"id": "w", "value": {"type": "script", "path": "f/t/when", "input_transforms": {
        "name": {"type": "javascript", "expr": "flow_input.name"},
        "when": {"type": "static", "value": "2026-03-01T10:00:00Z"}}}}])
    run = Runner(tmp_path, Config()).run_flow("f/t/dated", {"name": "x"})
    assert run.success, run.result
    assert run.result == {"name": "x", "year": 2026, "times": 3, "tag": None, "isDate": True}
    assert [j.kind for j in run.jobs] == ["flow", "script"]
    direct = Runner(tmp_path, Config()).run_script("f/t/when", {"name": "y", "when": "1999-12-31T00:00:00Z"})
    assert direct.success and direct.result["year"] == 1999


def test_a_thrown_error_is_windmills_error_object_and_fails_the_flow(tmp_path):
    code = textwrap.dedent("""\
        class Declined extends Error { constructor(m: string) { super(m); this.name = "Declined"; this.code = 402; } }
        export async function main(amount: number) { throw new Declined(`card declined for ${amount}`); }
    """)
    write_flow(tmp_path, "boom", [step("charge", code, {"amount": {"type": "static", "value": 1000}}, "deno")])
    run = Runner(tmp_path, Config()).run_flow("f/t/boom", {})
    assert not run.success
    error = run.result["error"]
    assert (error["name"], error["message"], error["step_id"], error["extra"]) == (
        "Declined", "card declined for 1000", "charge", {"code": 402})
    assert "main" in error["stack"]


def test_a_script_bun_cannot_load_fails_with_its_log(tmp_path):
    write_flow(tmp_path, "broken", [step("b", "export async function main( {", {})])
    run = Runner(tmp_path, Config()).run_flow("f/t/broken", {})
    assert not run.success
    assert run.result["error"]["name"] == "ExecutionErr"
    assert run.result["error"]["message"].startswith("ExitCode: 1")
