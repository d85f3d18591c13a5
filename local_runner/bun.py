"""TypeScript steps on Bun, run as Windmill's bun executor runs them.

Windmill (backend/windmill-worker/src/bun_executor.rs@01c3cfe, handle_bun_job) writes the
job's arguments to args.json and a wrapper.mjs that imports the script, picks the
arguments by the names `windmill_parser_ts::parse_deno_signature` finds in `main`'s
signature (an argument not given is `undefined`, so its default applies; a `Date`
argument is built from its string), awaits `main(...)`, and writes
`JSON.stringify(res ?? null)` (undefined -> null, BigInt -> string) to result.json, or,
when it throws, `{message, name, stack}` (+ step_id, + extra own properties) with exit
code 1. The wrapper below is that wrapper; the signature comes from the same parser
(windmill-parser-wasm-ts, pinned in package.json through windmill-cli).

Bun itself is the npm registry's `bun` package, pinned in package.json (its per-platform
binary arrives as an optional dependency, e.g. @oven/bun-linux-x64). Each step is a fresh
`bun run` process, as on Windmill. Scripts import `windmill-client` (pinned in
package.json, resolved through NODE_PATH), which talks to the local API: the same
wmill_local.handle that serves the Python client in process, here behind an HTTP server
on 127.0.0.1 (local_runner/jobenv.py) whose address and a per-job token reach the script as Windmill's reserved
variables (BASE_INTERNAL_URL, WM_TOKEN, WM_WORKSPACE, WM_JOB_ID, WM_STATE_PATH, ...).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from . import deep, jobenv, wmill_local

LANGUAGES = ("bun", "deno")  # rawscript languages run here (deno-style scripts run on Bun too)
NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
SIGNATURE_HELPER = Path(__file__).resolve().parent / "ts_signature.mjs"


class BunError(Exception):
    """Bun is missing, or a TypeScript script cannot be prepared."""


def bun_path() -> Path:
    for candidate in (NODE_MODULES / ".bin" / "bun", NODE_MODULES / "@oven" / "bun-linux-x64" / "bin" / "bun"):
        if candidate.exists():
            return candidate
    raise BunError(f"no Bun in {NODE_MODULES}: run `make setup` (npm ci installs the pinned `bun` package)")


# ---------------------------------------------------------------- scripts

_WRAPPER = """
import * as Main from {main_import};

import * as fs from "fs/promises";

let args = await fs.readFile('args.json', {{ encoding: 'utf8' }}).then(JSON.parse);

function argsObjToArr({{ {spread} }}) {{
    return [ {spread} ];
}}

BigInt.prototype.toJSON = function () {{
    return this.toString();
}};

async function run() {{
    {dates}
    const argsArr = argsObjToArr(args);
    if (Main.{main_name} === undefined || typeof Main.{main_name} !== 'function') {{
        throw new Error("{main_name} function is missing");
    }}
    let res = await Main.{main_name}(...argsArr);
    const res_json = JSON.stringify(res ?? null, (key, value) => typeof value === 'undefined' ? null : value);
    await fs.writeFile("result.json", res_json);
    process.exit(0);
}}
try {{
    await run();
}} catch(e) {{
    console.error(e);
    let err = {{ message: e.message, name: e.name, stack: e.stack }};
    let step_id = process.env.WM_FLOW_STEP_ID;
    if (step_id) {{
        err["step_id"] = step_id;
    }}
    const extra = {{}};
    Object.getOwnPropertyNames(e).forEach((key) => {{
        if (['line', 'name', 'stack', 'column', 'message', 'sourceURL', 'originalLine', 'originalColumn'].includes(key)) {{
            return;
        }}
        extra[key] = e[key];
    }});
    if (Object.keys(extra).length > 0) {{
        err["extra"] = extra;
    }}
    await fs.writeFile("result.json", JSON.stringify(err));
    process.exit(1);
}}
"""


class TsScriptFailed(Exception):
    """The script threw (or Bun failed): `error` is Windmill's error object."""

    def __init__(self, error: dict):
        super().__init__(error.get("message"))
        self.error = error


@dataclass(frozen=True)
class TsScript:
    file: Path

    def signature(self, entry: str) -> list[dict]:
        return _signature(self.file, entry)

    def call(self, fn_name: str, args: dict, ctx: wmill_local.JobContext, *, root_job: str,
             step_id: str | None, flow_path: str | None) -> Any:
        params = self.signature(fn_name)
        names = [p["name"] for p in params]
        dates = "\n    ".join(f'args["{p["name"]}"] = args["{p["name"]}"] ? new Date(args["{p["name"]}"]) : undefined'
                               for p in params if p["typ"] == "datetime")
        wrapper = _WRAPPER.format(main_import=json.dumps(str(self.file)), spread=",".join(names),
                                  dates=dates, main_name=fn_name)
        api = jobenv.api_server()  # the local API over HTTP, answering for this job's token
        token = api.register(ctx)
        job_dir = Path(tempfile.mkdtemp(prefix="wm-bun-"))
        try:
            (job_dir / "args.json").write_text(deep.dumps(args))
            (job_dir / "wrapper.mjs").write_text(wrapper)
            env = _reserved_env(ctx, token, api.url, root_job, step_id, flow_path)
            proc = subprocess.run([str(bun_path()), "run", "--no-install", str(job_dir / "wrapper.mjs")],
                                  cwd=job_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, check=False)
            out = job_dir / "result.json"
            result = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
        finally:
            api.forget(token)
            shutil.rmtree(job_dir, ignore_errors=True)
        if proc.returncode == 0:
            return result
        if isinstance(result, dict) and "message" in result:
            raise TsScriptFailed(result)
        # No result.json: Bun failed before the wrapper ran (a syntax error, a missing import)
        last = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise TsScriptFailed({"name": "ExecutionErr", "message": f"ExitCode: {proc.returncode}, last log lines:\n{last}"})


def _reserved_env(ctx: wmill_local.JobContext, token: str, url: str, root_job: str, step_id: str | None,
                  flow_path: str | None) -> dict:
    """Windmill's reserved variables (worker common.rs get_reserved_variables) and the
    client's base URL; nothing else of this process's environment leaks into the job."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "NODE_PATH": str(NODE_MODULES), "BASE_INTERNAL_URL": url, "BASE_URL": url, "WM_BASE_URL": url,
           "WM_TOKEN": token, "WM_WORKSPACE": ctx.config.workspace, "WM_JOB_ID": ctx.job_id,
           "WM_ROOT_FLOW_JOB_ID": root_job, "WM_STATE_PATH": ctx.state_path, "WM_STATE_PATH_NEW": ctx.state_path,
           "DO_NOT_TRACK": "1"}
    if ctx.parent_job:
        env["WM_FLOW_JOB_ID"] = ctx.parent_job
    if flow_path:
        env["WM_FLOW_PATH"] = flow_path
    if step_id:
        env["WM_FLOW_STEP_ID"] = step_id
    return env


_signatures: dict[tuple, list[dict]] = {}


def _signature(file: Path, entry: str) -> list[dict]:
    """`entry`'s parameters as windmill-parser-wasm-ts parses them (cached per file version)."""
    stat = file.stat()
    key = (str(file), stat.st_mtime_ns, stat.st_size, entry)
    if key not in _signatures:
        proc = subprocess.run([str(bun_path()), "run", "--no-install", str(SIGNATURE_HELPER), str(file), entry],
                              cwd=NODE_MODULES.parent, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BunError(f"{file}: cannot parse {entry}()'s signature: {proc.stderr.strip()[-500:]}")
        # unparsable code ({"type": "Invalid"}): no arguments; Bun's import then reports the error
        _signatures[key] = json.loads(proc.stdout).get("args") or []
    return _signatures[key]


def script_file(root: Path, path: str) -> TsScript | None:
    """The `f/**/<path>.ts` script (`.deno.ts` for a deno one, as `wmill sync` names them)."""
    for file in (root / f"{path}.ts", root / f"{path}.deno.ts"):
        if file.exists():
            return TsScript(file)
    return None


def rawscript(flow_dir: Path, content: str) -> TsScript:
    """A TypeScript rawscript: `!inline <file>` beside the flow, or the code itself
    (written once to a file named by its hash, so Bun can import it)."""
    if content.startswith("!inline "):
        return TsScript(flow_dir / content.removeprefix("!inline ").strip())
    cache = Path(tempfile.gettempdir()) / "wm-bun-rawscripts"
    cache.mkdir(exist_ok=True)
    file = cache / f"{hashlib.sha256(content.encode()).hexdigest()}.ts"
    if not file.exists():
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(content)
        tmp.replace(file)
    return TsScript(file)
