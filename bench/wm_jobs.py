"""Each script step of a flow as a fresh Python process, the way a Windmill worker runs it.

What a worker does for one Python job (windmill-labs/windmill,
backend/windmill-worker/src/python_executor.rs@00e22cda, `handle_python_job` and
`prepare_wrapper`), reproduced here with our own code:

- a new job directory holding the script at `<dirs>/<name>.py`, `args.json` (the job's
  resolved arguments) and a generated `wrapper.py`, run as `python -u -m wrapper` with the
  job directory as working directory;
- the wrapper imports the script, reads `args.json`, passes each parameter of the entry
  function (`args[name] = kwargs.get(name)`, a None dropped when the parameter has a
  default), calls it and writes `json.dumps(result, separators=(',', ':'), default=str)`
  to `result.json`; an exception becomes `{message, name, stack, extra, step_id}` and exit 1
  (`extra`: the exception's instance attributes when it has any, as in python_executor.rs@94bbd518;
  the entry flow's failure module reads `error.extra.rejected`);
- a script that imports `f.…` gets the worker's loader (`backend/windmill-worker/loader.py@032ffb75`,
  `WindmillFinder`): `f` and `f.dodo` are namespaces, and every deeper module, `f.dodo.lib`
  itself included, is one HTTP GET of `/api/w/<ws>/scripts/raw/p/<path>.py` with the job's
  token, written under `./tmp/` and compiled there (no cached bytecode: the directory is new);
- `wmill` calls (variables, resources) are HTTP requests to the same API.

`WindmillApi` answers those requests from the repository and a `Config` on loopback;
`ProcessRunner` is the local runner with every Python script job run this way, recording each
job's CPU (user + sys of the finished child, from wait4). A postgresql script job (`.pg.sql`)
runs in the worker itself on Windmill (pg_executor.rs: no process), so here it runs in
process as the runner runs it (local_runner/pg_script.py): it is a Windmill job but costs no
Python process, so it is kept out of `costs` and listed in `sql_jobs`.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import yaml

from local_runner.config import Config
from local_runner.runner import Runner

TOKEN = "bench-job-token"

# The worker's loader, as behaviour (loader.py@032ffb75): appended to sys.meta_path, so the
# job directory (on sys.path) wins for `f` and `f.dodo`, and each `f.x.y…` module not found
# there is fetched over HTTP, written under ./tmp and loaded from source.
LOADER = '''
import os
import sys
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec, SourceFileLoader


class _Namespace(Loader):
    def __init__(self, name):
        self.name = name

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__path__ = self.name


class _Fetch(MetaPathFinder):
    @classmethod
    def find_spec(cls, name, path, target=None):
        parts = name.split(".")
        if parts[0] not in ("f", "u"):
            return None
        if len(parts) <= 2:
            return ModuleSpec(name, _Namespace(name))
        import urllib.request
        url = "%s/api/w/%s/scripts/raw/p/%s.py" % (os.environ.get("BASE_INTERNAL_URL"),
                                                     os.environ.get("WM_WORKSPACE"), "/".join(parts))
        req = urllib.request.Request(url, None, {"Authorization": "Bearer %s" % os.environ.get("WM_TOKEN")})
        try:
            with urllib.request.urlopen(req) as response:
                text = response.read().decode("utf-8")
        except Exception:
            return ModuleSpec(name, _Namespace(name))
        folder = os.path.join(os.getcwd(), "tmp", *parts[:-1])
        os.makedirs(folder, exist_ok=True)
        full = os.path.join(folder, parts[-1] + ".py")
        with open(full, "w") as f:
            f.write(text)
        return ModuleSpec(name, SourceFileLoader(name, full))


sys.meta_path.append(_Fetch)
'''

WRAPPER = '''
import os
import json
{import_loader}
import traceback
import sys
from {package} import {name} as inner_script
import re

with open("args.json") as f:
    kwargs = json.load(f, strict=False)
args = {{}}
result_json = os.path.join(os.path.abspath(os.path.dirname(__file__)), "result.json")

try:
    {spread}
    res = inner_script.{entry}(**args)
    with open(result_json, "w") as f:
        f.write(json.dumps(res, separators=(",", ":"), default=str).replace("\\n", ""))
except BaseException as e:
    tb = traceback.format_tb(sys.exc_info()[2])
    err = {{"message": str(e), "name": e.__class__.__name__, "stack": "\\n".join(tb[1:])}}
    extra = e.__dict__
    if extra and len(extra) > 0:
        err["extra"] = extra
    if os.environ.get("WM_FLOW_STEP_ID"):
        err["step_id"] = os.environ["WM_FLOW_STEP_ID"]
    with open(result_json, "w") as f:
        f.write(json.dumps(err, separators=(",", ":"), default=str).replace("\\n", ""))
    sys.exit(1)
'''


def _spread(source: str, entry: str) -> str:
    """The wrapper's argument lines for `entry`'s parameters (prepare_wrapper's `spread`)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            a = node.args
            params = a.posonlyargs + a.args + a.kwonlyargs
            defaults = [None] * (len(a.posonlyargs + a.args) - len(a.defaults)) + list(a.defaults) + a.kw_defaults
            if a.kwarg:
                return "args = kwargs"
            lines = []
            for p, d in zip(params, defaults):
                lines.append(f'args["{p.arg}"] = kwargs.get("{p.arg}")')
                if d is not None:
                    lines.append(f'if args["{p.arg}"] is None:\n        del args["{p.arg}"]')
            return "\n    ".join(lines) or "pass"
    raise ValueError(f"no {entry}() in the script")


@dataclass
class JobCost:
    label: str      # script path, or "<flow>/<step>" for an inline script
    step_id: str | None
    cpu_ms: float
    success: bool
    error: str | None = None


@dataclass
class Script:
    """A script as a worker receives it: its Windmill path and its source."""
    path: str       # e.g. f/dodo/normalize, or f/dodo/webhook/preprocessor for an inline one
    source: str

    def __post_init__(self):
        # the runner picks the entry point with hasattr(module, "preprocessor")
        if any(isinstance(n, ast.FunctionDef) and n.name == "preprocessor" for n in ast.parse(self.source).body):
            self.preprocessor = True


def run_job(script: Script, entry: str, args: dict, env: dict, *, step_id: str | None = None,
            loader: bool = True, python: str = sys.executable) -> tuple[bool, object, float]:
    """(success, result, CPU ms) of one job in a fresh process and a fresh job directory.
    `loader=False`: the library is imported from `env["PYTHONPATH"]` (compiled bytecode
    cached there) instead of through the worker's loader: the job without the loader's
    HTTP fetches and compiles."""
    job_dir = Path(tempfile.mkdtemp(prefix="wm_job_"))
    try:
        *dirs, name = script.path.split("/")
        (job_dir.joinpath(*dirs)).mkdir(parents=True, exist_ok=True)
        job_dir.joinpath(*dirs, f"{name}.py").write_text(script.source)
        relative = loader and any(line.lstrip().startswith(("from f.", "import f."))
                                  for line in script.source.splitlines())
        if relative:
            (job_dir / "loader.py").write_text(LOADER)
        (job_dir / "args.json").write_text(json.dumps(args, default=str))
        (job_dir / "wrapper.py").write_text(WRAPPER.format(
            import_loader="import loader" if relative else "", package=".".join(dirs), name=name,
            entry=entry, spread=_spread(script.source, entry)))
        job_env = {**env, "WM_FLOW_STEP_ID": step_id or ""} if step_id else dict(env)
        with open(job_dir / "stderr.txt", "w") as err:
            child = subprocess.Popen([python, "-u", "-m", "wrapper"], cwd=job_dir, env=job_env,
                                     stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        cpu_ms = (usage.ru_utime + usage.ru_stime) * 1000
        out = job_dir / "result.json"
        if not out.exists():
            raise RuntimeError(f"{script.path}: no result (exit {child.returncode}): "
                               f"{(job_dir / 'stderr.txt').read_text()[-800:]}")
        result = json.loads(out.read_text())
        return child.returncode == 0, result, cpu_ms
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def bare_cpu_ms(env: dict, python: str = sys.executable) -> float:
    """CPU of `python -c pass`: the baseline, measured the same way."""
    child = subprocess.Popen([python, "-c", "pass"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(child.pid, 0)
    return (usage.ru_utime + usage.ru_stime) * 1000


class _Text(str):
    """A text/plain answer (a script's source); anything else is JSON."""


class WindmillApi:
    """Loopback stand-in of the Windmill API a job calls: scripts/raw (the loader),
    variables, resources and flows/get (wmill or urllib)."""

    def __init__(self, root: Path, config: Config):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                status, body = api.answer(unquote(self.path.split("?", 1)[0]), self.headers.get("Authorization"))
                text = isinstance(body, _Text)
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.root, self.config = Path(root), config
        self.requests = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, auth: str | None) -> tuple[int, object]:
        self.requests += 1
        if auth != f"Bearer {TOKEN}":
            return 401, {"error": "bad token"}
        prefix = f"/api/w/{self.config.workspace}/"
        if not path.startswith(prefix):
            return 404, {"error": "not found"}
        rest = path[len(prefix):]
        try:
            if rest.startswith("scripts/raw/p/"):
                file = self.root / rest.removeprefix("scripts/raw/p/")
                return (200, _Text(file.read_text())) if file.is_file() else (404, _Text("script not found"))
            if rest.startswith("variables/get_value/"):
                return 200, self.config.get_variable(rest.removeprefix("variables/get_value/"))
            if rest.startswith("resources/get_value_interpolated/"):
                return 200, self.config.get_resource(rest.removeprefix("resources/get_value_interpolated/"))
            if rest.startswith("resources/get_value/"):
                return 200, self.config.get_resource(rest.removeprefix("resources/get_value/"), interpolated=False)
            if rest.startswith("resources/exists/"):
                return 200, rest.removeprefix("resources/exists/") in self.config.resources
            if rest.startswith("variables/exists/"):
                return 200, rest.removeprefix("variables/exists/") in self.config.variables
            if rest.startswith("flows/get/"):
                file = self.root / f"{rest.removeprefix('flows/get/')}__flow" / "flow.yaml"
                return (200, yaml.safe_load(file.read_text())) if file.is_file() else (404, {"error": "not found"})
        except KeyError as e:
            return 404, {"error": str(e)}
        return 404, {"error": f"not implemented: {rest}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class JobFailed(Exception):
    """A job's error result, raised under the job's own error name (retry_if reads it)."""


def _job_error(result: dict) -> Exception:
    name = str(result.get("name") or "Exception")
    exc = type(name, (JobFailed,), {})(result.get("message", ""))
    if isinstance(result.get("extra"), dict):  # the runner reports them as the job's error.extra
        vars(exc).update(result["extra"])
    return exc


class ProcessRunner(Runner):
    """The local runner with every Python script job run as a worker runs it (run_job). `costs`
    collects each Python job's CPU in the order the jobs finished; `sql_jobs` the postgresql
    jobs (run in process, as the worker runs them), with cpu_ms 0: no Python process."""

    def __init__(self, root, config: Config, env: dict, *, loader: bool = True, **kwargs):
        super().__init__(root, config, sleep=lambda s: None, **kwargs)
        self.env, self.loader = env, loader
        self.costs: list[JobCost] = []
        self.sql_jobs: list[JobCost] = []

    def _run_sql(self, label: str, code: str, args: dict, job):
        try:
            result = super()._run_sql(label, code, args, job)
        except Exception as e:
            with self._lock:
                self.sql_jobs.append(JobCost(label, job.step_id, 0.0, False, str(e)[:1500]))
            raise
        with self._lock:
            self.sql_jobs.append(JobCost(label, job.step_id, 0.0, True))
        return result

    def _script_module(self, path: str):
        return Script(path, (self.root / f"{path}.py").read_text())

    def _inline_module(self, flow_path: str, content: str):
        file = self.flow_file(flow_path).parent / content.removeprefix("!inline ").strip()
        return Script(f"{flow_path}/{file.stem}", file.read_text())

    def _call(self, mod: Script, fn_name: str, args: dict, job, flow_path: str):
        env = {**self.env, "WM_JOB_ID": job.id}
        if not self.loader:
            env["PYTHONPATH"] = str(self.root)
        args = self.config.resolve_args(args, env)  # as the worker does before it starts the job
        ok, result, cpu = run_job(mod, fn_name, args, env, step_id=job.step_id, loader=self.loader)
        with self._lock:
            self.costs.append(JobCost(mod.path, job.step_id, cpu, ok,
                                      None if ok else json.dumps(result, default=str)[:1500]))
        if not ok:
            raise _job_error(result if isinstance(result, dict) else {})
        return result
