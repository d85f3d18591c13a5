"""Execute OpenFlow `flow.yaml` files with Windmill's semantics, offline.

A development tool, not an engine: one Python process, threads for parallel
branches and loops. Every construct it runs is checked against Windmill's flow
worker (backend/windmill-worker/src/worker_flow.rs); the tests in
tests/test_runner_*.py cite the source for each behaviour. Any key it does not
implement is refused before the flow starts (`UnsupportedFlow`).

Jobs are recorded as Windmill creates them: the root flow, each script step
(every retry attempt included), each identity step, each branch of a branchone /
branchall (a sub-flow job; none for an empty branchone branch), each loop iteration
(a sub-flow job, unless the body is a single script, which Windmill pushes directly),
the preprocessor and the failure module, and each sub-flow called by path.
"""
from __future__ import annotations

import datetime as dt
import decimal
import importlib
import importlib.util
import inspect
import json
import random
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any, Callable

import yaml

from . import bun, deep, js, passthrough, wmill_local
from .config import Config

MAX_RETRY_INTERVAL_S = 6 * 3600  # Windmill caps a retry delay (MAX_RETRY_INTERVAL)
KEEP_STARTED = 10_000  # finished flows started by scripts, kept for their result lookups


class RunnerError(Exception):
    """The runner cannot run this (bad path, bad flow file)."""


class UnsupportedFlow(RunnerError):
    """The flow uses a key the local runner does not implement."""


# ---------------------------------------------------------------- flow validation

_FLOW_KEYS = {"summary", "description", "schema", "value"}
_VALUE_KEYS = {"modules", "failure_module", "preprocessor_module", "same_worker"}
_MODULE_KEYS = {"id", "summary", "value", "retry", "stop_after_if", "skip_if", "sleep",
                "timeout", "continue_on_error"}
_TYPE_KEYS = {
    "script": {"type", "path", "input_transforms"},
    "rawscript": {"type", "content", "language", "input_transforms", "lock", "path"},
    "flow": {"type", "path", "input_transforms"},
    "branchone": {"type", "branches", "default"},
    "branchall": {"type", "branches", "parallel"},
    "forloopflow": {"type", "iterator", "modules", "skip_failures", "parallel", "parallelism"},
    "identity": {"type"},
}
_BRANCH_KEYS = {"branchone": {"summary", "expr", "modules"},
                "branchall": {"summary", "skip_failure", "modules"}}
_RETRY_KEYS = {"constant": {"attempts", "seconds"},
               "exponential": {"attempts", "multiplier", "seconds", "random_factor"}}


def _refuse(where: str, keys) -> None:
    raise UnsupportedFlow(f"{where}: unsupported key(s) {sorted(keys)}")


def _check_keys(where: str, obj: dict, allowed: set) -> None:
    extra = set(obj) - allowed
    if extra:
        _refuse(where, extra)


def _check_transforms(where: str, transforms: dict) -> None:
    for name, t in (transforms or {}).items():
        kind = t.get("type")
        if kind == "static":
            _check_keys(f"{where}.input_transforms.{name}", t, {"type", "value"})
        elif kind == "javascript":
            _check_keys(f"{where}.input_transforms.{name}", t, {"type", "expr"})
        else:
            _refuse(f"{where}.input_transforms.{name}", [f"type: {kind}"])


def validate_modules(where: str, modules: list) -> None:
    for m in modules or []:
        validate_module(f"{where}.{m.get('id', '?')}", m)


def validate_module(where: str, m: dict) -> None:
    _check_keys(where, m, _MODULE_KEYS)
    v = m.get("value") or {}
    kind = v.get("type")
    if kind not in _TYPE_KEYS:
        _refuse(where, [f"type: {kind}"])
    _check_keys(where, v, _TYPE_KEYS[kind])
    _check_transforms(where, v.get("input_transforms"))
    if kind == "rawscript" and v.get("language") not in ("python3", None, *bun.LANGUAGES):
        _refuse(where, [f"language: {v.get('language')}"])
    if "retry" in m and m["retry"]:
        _check_keys(f"{where}.retry", m["retry"], set(_RETRY_KEYS) | {"retry_if"})
        for k, sub in m["retry"].items():
            if sub:
                _check_keys(f"{where}.retry.{k}", sub, _RETRY_KEYS.get(k, {"expr"}))
    if m.get("stop_after_if"):
        _check_keys(f"{where}.stop_after_if", m["stop_after_if"], {"expr", "skip_if_stopped", "error_message"})
    if m.get("skip_if"):
        _check_keys(f"{where}.skip_if", m["skip_if"], {"expr"})
    for t in ("sleep", "timeout"):
        if t in m and m[t] is not None and not isinstance(m[t], (int, dict)):
            _refuse(where, [t])
    if kind in _BRANCH_KEYS:
        for i, b in enumerate(v.get("branches") or []):
            _check_keys(f"{where}.branches[{i}]", b, _BRANCH_KEYS[kind])
            validate_modules(f"{where}.branches[{i}]", b.get("modules"))
        validate_modules(f"{where}.default", v.get("default"))
    if kind == "forloopflow":
        validate_modules(where, v.get("modules"))


def validate_flow(where: str, flow: dict) -> None:
    _check_keys(where, flow, _FLOW_KEYS)
    value = flow.get("value") or {}
    _check_keys(f"{where}.value", value, _VALUE_KEYS)
    validate_modules(where, value.get("modules"))
    for special in ("failure_module", "preprocessor_module"):
        if value.get(special):
            validate_module(f"{where}.{special}", value[special])
            if value[special]["value"]["type"] not in ("script", "rawscript"):
                _refuse(f"{where}.{special}", [f"type: {value[special]['value']['type']}"])


# ---------------------------------------------------------------- records


@dataclass
class Job:
    """One Windmill job, as the runner records it."""
    id: str
    kind: str            # flow | flowpreview (branch/iteration sub-flow) | script | rawscript | identity | preprocessor | failure
    path: str            # runnable path, or "<flow path>/<step id>" for steps
    parent: str | None
    root: str
    step_id: str | None = None
    attempt: int = 0     # retry attempt (0 = first run)
    success: bool | None = None
    skipped: bool = False
    result: Any = None
    started_at: float = 0.0
    duration_ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Run:
    """A finished root job (a flow or a script)."""
    id: str
    path: str
    success: bool
    result: Any
    skipped: bool
    jobs: list[Job] = field(default_factory=list)

    @property
    def job_count(self) -> int:
        return len(self.jobs)


class StepFailed(Exception):
    """A step failed; `result` is Windmill's error result {"error": {...}}."""

    def __init__(self, result: dict, step_id: str | None, handled: bool = False):
        super().__init__(result.get("error", {}).get("message"))
        self.result, self.step_id, self.handled = result, step_id, handled


class StoppedEarly(Exception):
    """stop_after_if fired (without error_message): the flow ends with `result`."""

    def __init__(self, result: Any, skipped: bool):
        self.result, self.skipped = result, skipped


def error_result(exc: BaseException) -> dict:
    """Windmill's result for a Python exception: {"error": {name, message, stack}}."""
    if isinstance(exc, bun.TsScriptFailed):  # a TypeScript step's own error object
        return {"error": exc.error}
    return {"error": {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack": _stack(exc),
    }}


def _stack(exc: BaseException) -> str:
    """The traceback of the script's own frames (the runner's are not the user's)."""
    here = str(Path(__file__).parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(here)]
    return "".join(traceback.format_list(frames) + traceback.format_exception_only(exc))


def _jsonable(value: Any) -> Any:
    """The result as Windmill stores it (JSON), at any depth: a copy whose containers are
    new and whose leaves are what json.dumps-then-loads gives (strings shared, not
    re-encoded: a large delivery is not serialised again at each step)."""
    return deep.walk(value, _json_leaf, _json_key)


def _json_leaf(o: Any) -> Any:
    kind = type(o)
    if o is None or kind in (str, int, float, bool):
        return o
    if isinstance(o, str):  # subclasses (str enums) become the plain value, as json gives
        return str.__str__(o)
    if isinstance(o, bool):
        return bool(o)
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return float(o)
    return _jsonable(_json_default(o))


def _json_key(k: Any) -> str:
    """A dict key as json.dumps writes it."""
    if isinstance(k, str):
        return str.__str__(k)
    if k is True or k is False or k is None:
        return json.dumps(k)
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float):
        return json.dumps(float(k))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _json_default(o):
    """What json.dumps writes for a value it cannot encode itself."""
    if isinstance(o, (dt.datetime, dt.date, dt.time)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)  # never float money
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


# ---------------------------------------------------------------- the runner


@dataclass
class _Scope:
    """One flow job by path: its inputs and its steps' results (`results.<id>`)."""
    path: str
    job_id: str
    root: str
    flow_input: dict
    results: dict
    log: list
    failure_module: dict | None


class Runner:
    """Runs flows and scripts of the repository at `root`.

    `sleep(seconds)` is called for retry delays and step `sleep`s (tests pass a
    recorder); `random()` gives the retry jitter.
    """

    def __init__(self, root: str | Path = ".", config: Config | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = random.random,
                 max_parallel: int = 8,
                 on_progress: Callable[[str, int], None] | None = None):
        self.root = Path(root).resolve()
        self.config = config or Config.from_env()
        self.sleep, self.random = sleep, random
        self.max_parallel = max_parallel
        self.on_progress = on_progress  # (job id, percent) for each wmill.set_progress
        self._flows: dict[str, dict] = {}
        self._modules: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._started: OrderedDict[str, Run] = OrderedDict()  # flows started through wmill
        self.progress: dict[str, int] = {}
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        wmill_local.install()

    # -- loading

    def flow_file(self, path: str) -> Path:
        # wmill.yaml nonDottedPaths: true -> f/x/y__flow/flow.yaml
        return self.root / f"{path}__flow" / "flow.yaml"

    def load_flow(self, path: str) -> dict:
        with self._lock:
            if path in self._flows:
                return self._flows[path]
        file = self.flow_file(path)
        if not file.exists():
            raise RunnerError(f"no flow at {path} ({file})")
        flow = yaml.safe_load(file.read_text())
        validate_flow(path, flow)
        with self._lock:
            self._flows[path] = flow
        return flow

    def has_preprocessor(self, path: str) -> bool:
        return bool(self.load_flow(path)["value"].get("preprocessor_module"))

    def _script_module(self, path: str):
        with self._lock:
            mod = self._modules.get(path)
        if mod is None:
            if not (self.root / f"{path}.py").exists():
                if ts := bun.script_file(self.root, path):
                    return ts
                raise RunnerError(f"no script at {path}")
            mod = importlib.import_module(path.replace("/", "."))
            with self._lock:
                self._modules[path] = mod
        return mod

    def _inline_module(self, flow_path: str, content: str):
        if not content.startswith("!inline "):
            raise UnsupportedFlow(f"{flow_path}: rawscript content must be '!inline <file>'")
        file = self.flow_file(flow_path).parent / content.removeprefix("!inline ").strip()
        key = str(file)
        with self._lock:
            mod = self._modules.get(key)
        if mod is None:
            name = "_wm_inline_" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex
            spec = importlib.util.spec_from_file_location(name, file)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            with self._lock:
                self._modules[key] = mod
        return mod

    # -- public API

    def run_flow(self, path: str, args: dict | None = None, *, event: dict | None = None,
                 job_id: str | None = None) -> Run:
        """Run the flow at `path`. With `event` (a trigger's preprocessor event,
        {kind: webhook|http, ...}) the flow's preprocessor runs first and its result
        becomes the flow inputs; without it the preprocessor is skipped, as for runs
        from the Windmill UI."""
        flow = self.load_flow(path)
        if event is not None and not flow["value"].get("preprocessor_module"):
            raise RunnerError(f"{path} has no preprocessor_module to receive a trigger event")
        job_id = job_id or str(uuid.uuid4())
        log: list[Job] = []
        job = self._start(log, "flow", path, None, job_id, job_id=job_id)
        try:
            success, result, skipped = self._flow_job(flow, path, job, dict(args or {}), event, log)
        finally:
            self._forget(log)
        return Run(job_id, path, success, result, skipped, log)

    def run_script(self, path: str, args: dict | None = None) -> Run:
        job_id = str(uuid.uuid4())
        log: list[Job] = []
        job = self._start(log, "script", path, None, job_id, job_id=job_id)
        try:
            result = self._call(self._script_module(path), "main", self.config.interpolate(args or {}), job, path)
            self._finish(job, True, result)
        except Exception as e:  # noqa: BLE001 - a script error is the job's result
            self._finish(job, False, error_result(e))
        finally:
            self._forget(log)
        return Run(job_id, path, job.success, job.result, False, log)

    def _forget(self, log: list[Job]) -> None:
        # only running jobs are looked up (by the wmill client); the Run keeps the log
        with self._lock:
            for j in log:
                self._jobs.pop(j.id, None)

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _start_flow(self, path: str, args: dict) -> str:
        """wmill.run_flow_async from a script: a root flow job of its own (Windmill's
        do_not_track_in_parent default), run to its end before the id is returned."""
        run = self.run_flow(path, args)
        with self._lock:
            self._started[run.id] = run
            while len(self._started) > KEEP_STARTED:
                self._started.popitem(last=False)
        return run.id

    # -- jobs

    def _start(self, log, kind, path, parent, root, *, step_id=None, attempt=0, job_id=None) -> Job:
        job = Job(job_id or str(uuid.uuid4()), kind, path, parent, root, step_id, attempt,
                  started_at=time.time())
        with self._lock:
            log.append(job)
            self._jobs[job.id] = job
        return job

    def _finish(self, job: Job, success: bool, result: Any, skipped: bool = False) -> Any:
        job.success, job.result, job.skipped = success, result, skipped
        job.duration_ms = (time.time() - job.started_at) * 1000
        return result

    def _job_view(self, job_id: str) -> dict | None:
        """The job as GET jobs_u/get answers: a running job, or a finished flow that a
        script started (QueuedJob / CompletedJob)."""
        job = self.get_job(job_id)
        if job:
            done = job.success is not None
            return {"id": job.id, "type": "CompletedJob" if done else "QueuedJob", "running": not done,
                    "parent_job": job.parent, "root_job": job.root, "script_path": job.path,
                    "success": job.success, "result": job.result}
        with self._lock:
            run = self._started.get(job_id)
        return run and {"id": run.id, "type": "CompletedJob", "running": False, "parent_job": None,
                        "script_path": run.path, "success": run.success, "result": run.result,
                        "is_skipped": run.skipped}

    # -- flows

    def _flow_job(self, flow, path, job: Job, args, event, log) -> tuple[bool, Any, bool]:
        value = flow["value"]
        scope = _Scope(path, job.id, job.root, args, {}, log, value.get("failure_module"))
        try:
            if event is not None:
                pre = value["preprocessor_module"]
                out = self._script_step(pre, scope, {"event": event}, job.id, kind="preprocessor",
                                        flow_input={"event": event})
                # worker_flow.rs: an object result becomes the args, null -> {}, else {"value": r}
                scope.flow_input = out if isinstance(out, dict) else ({} if out is None else {"value": out})
            modules = value.get("modules") or []
            # worker_flow.rs: a flow without modules returns its args
            result = self._run_modules(modules, scope, scope.flow_input, job.id) if modules else scope.flow_input
            self._finish(job, True, result)
            return True, result, False
        except StoppedEarly as s:
            self._finish(job, True, s.result, s.skipped)
            return True, s.result, s.skipped
        except StepFailed as f:
            if f.handled or not scope.failure_module:
                self._finish(job, False, f.result)
                return False, f.result, False
            return self._failure(scope, f, job)

    def _failure(self, scope: _Scope, failed: StepFailed, job: Job) -> tuple[bool, Any, bool]:
        """Run the failure module. worker_flow.rs: the flow still fails unless the
        module returns {recover: true}; the flow's result is the module's result."""
        err = dict(failed.result.get("error") or {}, step_id=failed.step_id)
        try:
            out = self._script_step(scope.failure_module, scope, {"error": err}, job.id, kind="failure",
                                    previous=failed.result, extra_scope={"error": err})
        except StepFailed as f2:
            self._finish(job, False, f2.result)
            return False, f2.result, False
        ok = isinstance(out, dict) and out.get("recover") is True
        self._finish(job, ok, out)
        return ok, out, False

    def _run_modules(self, modules, scope: _Scope, flow_input, parent, previous=None):
        prev = flow_input if previous is None else previous  # step 0 sees the flow args
        for m in modules:
            prev = self._run_module(m, scope, flow_input, prev, parent)
        return prev

    def _expr_scope(self, scope: _Scope, flow_input, previous, **extra) -> dict:
        return {"flow_input": flow_input, "results": scope.results, "previous_result": previous, **extra}

    def _run_module(self, m: dict, scope: _Scope, flow_input, previous, parent):
        sid = m.get("id")
        if m.get("skip_if") and js.truthy(m["skip_if"]["expr"], self._expr_scope(scope, flow_input, previous)):
            # a skipped step runs as an identity job passing previous_result through
            job = self._start(scope.log, "identity", f"{scope.path}/{sid}", parent, scope.root, step_id=sid)
            result = self._finish(job, True, previous, skipped=True)
            scope.results[sid] = result
            return result
        try:
            result = self._dispatch(m, scope, flow_input, previous, parent)
        except StepFailed as f:
            if m.get("continue_on_error"):
                scope.results[sid] = f.result
                return f.result
            raise
        scope.results[sid] = result
        stop = m.get("stop_after_if")
        if stop and js.truthy(stop["expr"], self._expr_scope(scope, flow_input, previous, result=result)):
            msg = stop.get("error_message")
            if msg is not None:
                # worker_flow.rs get_stop_after_if_data: the flow fails with this message
                message = msg or f"stop after if: {stop['expr']}"
                raise StepFailed({"error": {"name": "StopAfterIf", "message": message}}, sid, handled=True)
            raise StoppedEarly(result, bool(stop.get("skip_if_stopped")))
        self._sleep_after(m, scope, flow_input, result)
        return result

    def _sleep_after(self, m, scope, flow_input, result):
        s = m.get("sleep")
        if s is None:
            return
        if isinstance(s, dict):
            s = s["value"] if s.get("type") == "static" else js.evaluate(
                s["expr"], self._expr_scope(scope, flow_input, result, result=result))
        if s:
            self.sleep(float(s))

    def _dispatch(self, m, scope, flow_input, previous, parent):
        kind = m["value"]["type"]
        if kind in ("script", "rawscript"):
            args = self._transform(m["value"].get("input_transforms"), scope, flow_input, previous)
            return self._script_step(m, scope, args, parent, flow_input=flow_input, previous=previous)
        if kind == "identity":
            job = self._start(scope.log, "identity", f"{scope.path}/{m['id']}", parent, scope.root, step_id=m["id"])
            return self._finish(job, True, previous)
        if kind == "flow":
            return self._subflow(m, scope, flow_input, previous, parent)
        if kind == "branchone":
            return self._branchone(m, scope, flow_input, previous, parent)
        if kind == "branchall":
            return self._branchall(m, scope, flow_input, previous, parent)
        if kind == "forloopflow":
            return self._forloop(m, scope, flow_input, previous, parent)
        raise UnsupportedFlow(f"{scope.path}.{m.get('id')}: type {kind}")

    def _transform(self, transforms, scope, flow_input, previous, **extra) -> dict:
        out = {}
        for name, t in (transforms or {}).items():
            if t["type"] == "static":
                out[name] = t.get("value")
            else:
                out[name] = passthrough.evaluate(t["expr"], self._expr_scope(scope, flow_input, previous, **extra))
        return out

    # -- script steps with retries

    def _script_step(self, m, scope: _Scope, args, parent, *, kind=None, flow_input=None, previous=None,
                     extra_scope=None):
        v, sid = m["value"], m.get("id") or kind
        if kind in ("preprocessor", "failure") and v.get("input_transforms"):
            args = {**args, **self._transform(v["input_transforms"], scope, flow_input or scope.flow_input,
                                              previous, **(extra_scope or {}))}
        if v["type"] == "script":
            mod, label, job_kind = self._script_module(v["path"]), v["path"], "script"
        elif v.get("language") in bun.LANGUAGES:
            mod, label, job_kind = bun.rawscript(self.flow_file(scope.path).parent, v["content"]), f"{scope.path}/{sid}", "rawscript"
        else:
            mod, label, job_kind = self._inline_module(scope.path, v["content"]), f"{scope.path}/{sid}", "rawscript"
        fn_name = "preprocessor" if kind == "preprocessor" and hasattr(mod, "preprocessor") else "main"
        timeout = m.get("timeout")
        fail_count = 0
        while True:
            job = self._start(scope.log, kind or job_kind, label, parent, scope.root, step_id=sid, attempt=fail_count)
            try:
                call = lambda: self._call(mod, fn_name, self.config.interpolate(args), job, scope.path)
                result = self._with_timeout(call, timeout) if timeout else call()
                return self._finish(job, True, result)
            except Exception as e:  # noqa: BLE001 - the error is the job's result
                failed = self._finish(job, False, error_result(e))
            if not self._retry_wanted(m.get("retry"), failed, flow_input or scope.flow_input):
                raise StepFailed(failed, sid)
            delay = self._retry_delay(m.get("retry"), fail_count)
            if delay is None:
                raise StepFailed(failed, sid)
            fail_count += 1
            self.sleep(delay)

    @staticmethod
    def _retry_wanted(retry: dict | None, failed: dict, flow_input) -> bool:
        """retry.retry_if, evaluated on each failure before any delay (worker_flow.rs
        evaluate_retry): false means no retry, the step fails now and the flow's failure
        handling proceeds. Its scope (compute_bool_from_expr, windmill-jseval): `result` and
        `previous_result` = the failed job's result {"error": {...}}, `error` = its
        `.error`, and `flow_input`; `results` is not available there. An expression that
        throws is an error of the flow run (ExpressionError), as any expression's."""
        cond = (retry or {}).get("retry_if")
        if not cond:
            return True
        scope = {"flow_input": flow_input, "result": failed, "previous_result": failed, "error": failed.get("error")}
        return js.truthy(cond["expr"], scope)

    def _retry_delay(self, retry: dict | None, fail_count: int) -> float | None:
        """Delay before retry number `fail_count + 1`, or None when retries are spent.
        Windmill (Retry::interval): constant retries first, then exponential ones; the
        n-th retry (n counting constant retries too) waits multiplier * seconds^n,
        with +/- random_factor % jitter."""
        if not retry:
            return None
        const = retry.get("constant") or {}
        expo = retry.get("exponential") or {}
        c_attempts = int(const.get("attempts") or 0)
        if fail_count < c_attempts:
            return float(const.get("seconds") or 0)
        if fail_count - c_attempts < int(expo.get("attempts") or 0):
            n = fail_count + 1
            delay = float(expo.get("multiplier") or 1) * float(expo.get("seconds") or 0) ** n
            rf = int(expo.get("random_factor") or 0)
            if rf:
                delay *= 1 + (self.random() * 2 - 1) * rf / 100
            return min(max(delay, 0.0), MAX_RETRY_INTERVAL_S)
        return None

    def _with_timeout(self, call, timeout):
        seconds = timeout["value"] if isinstance(timeout, dict) else timeout
        box: dict = {}

        def target():
            try:
                box["r"] = call()
            except BaseException as e:  # noqa: BLE001
                box["e"] = e
        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(float(seconds))
        if t.is_alive():
            raise TimeoutError(f"Timeout error: step exceeded {seconds}s")
        if "e" in box:
            raise box["e"]
        return box["r"]

    def _call(self, mod, fn_name: str, args: dict, job: Job, flow_path: str):
        """Call `fn` as Windmill's Python wrapper does: by name, defaults for missing args."""
        ctx = wmill_local.JobContext(self.config, job.id, job.parent, f"state/{flow_path}/{job.step_id or 'main'}",
                                     self._job_view, self.progress, self._start_flow, self.on_progress)
        if isinstance(mod, bun.TsScript):  # TypeScript: a Bun process, as Windmill's bun executor
            return mod.call(fn_name, args, ctx, root_job=job.root, step_id=job.step_id, flow_path=flow_path)
        fn = getattr(mod, fn_name, None)
        if fn is None:
            raise RunnerError(f"{mod.__name__} has no {fn_name}()")
        kwargs = {}
        for name, p in inspect.signature(fn).parameters.items():
            if name in args:
                kwargs[name] = args[name]
            elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                raise TypeError(f"{fn_name}() missing required argument: '{name}'")
        with wmill_local.running(ctx):
            return _jsonable(fn(**kwargs))

    # -- composite modules

    def _subflow(self, m, scope: _Scope, flow_input, previous, parent):
        path = m["value"]["path"]
        args = self._transform(m["value"].get("input_transforms"), scope, flow_input, previous)
        flow = self.load_flow(path)
        job = self._start(scope.log, "flow", path, parent, scope.root, step_id=m["id"])
        ok, result, skipped = self._flow_job(flow, path, job, args, None, scope.log)
        if not ok:
            # its own failure module already ran: the parent's does not (skip_error_handler)
            raise StepFailed(result, m["id"], handled=bool(flow["value"].get("failure_module")))
        if skipped:
            raise StoppedEarly(result, True)
        return result

    def _branchone(self, m, scope, flow_input, previous, parent):
        v = m["value"]
        modules, label = v.get("default") or [], f"{m['id']}/default"
        for i, b in enumerate(v.get("branches") or []):
            if js.truthy(b["expr"], self._expr_scope(scope, flow_input, previous)):
                modules, label = b.get("modules") or [], f"{m['id']}/branch-{i}"
                break
        if not modules:
            # worker_flow.rs payload_from_modules: an empty branch pushes no job
            # (EmptyInnerFlows); the module succeeds with no flow jobs, whose results are []
            return []
        return self._run_sub(modules, scope, flow_input, previous, parent, label)

    def _run_sub(self, modules, scope, flow_input, previous, parent, label):
        # a branch or loop iteration is a sub-flow job sharing the parent's results
        job = self._start(scope.log, "flowpreview", f"{scope.path}/{label}", parent, scope.root, step_id=label)
        try:
            # an empty sub-flow returns its args (worker_flow.rs), i.e. the flow input
            result = self._run_modules(modules, scope, flow_input, job.id, previous) if modules else flow_input
        except StepFailed as f:
            self._finish(job, False, f.result)
            raise
        except StoppedEarly as s:
            self._finish(job, True, s.result, s.skipped)
            raise
        return self._finish(job, True, result)

    def _branchall(self, m, scope, flow_input, previous, parent):
        v = m["value"]
        branches = v.get("branches") or []

        def one(i):
            b = branches[i]
            try:
                return True, self._run_sub(b.get("modules") or [], scope, flow_input, previous, parent,
                                           f"{m['id']}/branch-{i}")
            except StepFailed as f:
                return False, f
        if v.get("parallel"):
            with ThreadPoolExecutor(max_workers=min(self.max_parallel, max(1, len(branches)))) as ex:
                outcomes = list(ex.map(one, range(len(branches))))
        else:
            outcomes = []
            for i in range(len(branches)):
                outcomes.append(one(i))
                if not outcomes[-1][0] and not branches[i].get("skip_failure"):
                    break  # sequential: a failing branch without skip_failure stops the module
        results = []
        for i, (ok, out) in enumerate(outcomes):
            if not ok and not branches[i].get("skip_failure"):
                raise StepFailed(out.result, out.step_id, out.handled)
            results.append(out if ok else out.result)
        return results

    def _forloop(self, m, scope, flow_input, previous, parent):
        v = m["value"]
        it = v["iterator"]
        items = it["value"] if it["type"] == "static" else js.evaluate(it["expr"], self._expr_scope(scope, flow_input, previous))
        if not isinstance(items, list):
            raise StepFailed({"error": {"name": "ExecutionErr", "message": f"Expected an array value in the iterator expression, found: {json.dumps(items)}"}}, m["id"])
        modules = v.get("modules") or []
        simple = len(modules) == 1 and modules[0]["value"]["type"] in ("script", "rawscript")
        stopped = threading.Event()

        def one(index):
            if stopped.is_set():
                return None
            iter_input = {**flow_input, "iter": {"index": index, "value": items[index]}}
            try:
                if simple:
                    return True, self._run_module(modules[0], scope, iter_input, previous, parent)
                return True, self._run_sub(modules, scope, iter_input, previous, parent, f"{m['id']}/iter-{index}")
            except StoppedEarly as s:  # a stop inside a loop breaks the loop only
                stopped.set()
                return True, s.result
            except StepFailed as f:
                return False, f
        if v.get("parallel"):
            n = int(v.get("parallelism") or self.max_parallel)
            with ThreadPoolExecutor(max_workers=max(1, min(n, len(items) or 1))) as ex:
                outcomes = list(ex.map(one, range(len(items))))
        else:
            outcomes = []
            for i in range(len(items)):
                o = one(i)
                if o is None:
                    break
                outcomes.append(o)
                if not o[0] and not v.get("skip_failures"):
                    break
        results = []
        for o in outcomes:
            if o is None:
                continue
            ok, out = o
            if not ok and not v.get("skip_failures"):
                raise StepFailed(out.result, out.step_id, out.handled)
            results.append(out if ok else out.result)
        return results
