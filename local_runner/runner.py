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

import base64
import datetime as dt
import decimal
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import random
import types
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

from . import bun, deep, jobenv, js, passthrough, pg_script, triggers, wmill_local
from .config import ArgumentError, Config

_SAME = object()  # "no cached result"
MAX_RETRY_INTERVAL_S = 6 * 3600  # Windmill caps a retry delay (MAX_RETRY_INTERVAL)
KEEP_HISTORY = 10_000  # finished root flow runs kept for the jobs API (get, completed/list)
# Windmill keeps every job's arguments; here a failed run's are kept (what replay from the
# job history reads), as JSON text, the oldest dropped past this many bytes in all.
HISTORY_ARGS_BYTES = 64 * 1024 * 1024
# Who runs a job: the runner's one user, and the workspace error handler's own user, whose
# failed jobs are never sent to an error handler again (windmill-queue jobs.rs@7f41b1ef
# ERROR_HANDLER_USER_EMAIL; a failed handler is a critical error instead).
USER_EMAIL = "local@windmill.dev"
ERROR_HANDLER_EMAIL = "error_handler@windmill.dev"


class RunnerError(Exception):
    """The runner cannot run this (bad path, bad flow file)."""


class UnsupportedFlow(RunnerError):
    """The flow uses a key the local runner does not implement."""


# ---------------------------------------------------------------- flow validation

# Keys of OpenFlow as Windmill deserialises them (backend/windmill-types/src/flows.rs@002ac89f:
# FlowValue, FlowModule, FlowModuleValue, Branch, StopAfterIf, Retry, InputTransform). A key
# the runner does not implement is refused by name with its reason (`_UNSUPPORTED`);
# keys the Windmill UI saves but that change nothing here are accepted.
_FLOW_KEYS = {"summary", "description", "schema", "value"}
_VALUE_KEYS = {"modules", "failure_module", "preprocessor_module", "same_worker", "flow_env", "skip_expr", "schema",
               "preserve_step_tags"}
_MODULE_KEYS = {"id", "summary", "value", "retry", "stop_after_if", "stop_after_all_iters_if", "skip_if", "sleep", "timeout",
                "continue_on_error", "cache_ttl", "priority", "delete_after_use", "input_transforms",
                "mock"}
_TYPE_KEYS = {
    "script": {"type", "path", "input_transforms", "hash", "tag_override", "is_trigger"},
    "rawscript": {"type", "content", "language", "input_transforms", "lock", "path", "tag", "is_trigger",
                  "concurrency_settings", "assets", "concurrent_limit", "concurrency_time_window_s",
                  "custom_concurrency_key"},
    "flow": {"type", "path", "input_transforms"},
    "branchone": {"type", "branches", "default"},
    "branchall": {"type", "branches", "parallel"},
    "forloopflow": {"type", "iterator", "modules", "skip_failures", "parallel", "parallelism"},
    "whileloopflow": {"type", "modules", "skip_failures"},
    "identity": {"type"},
}
# a branchone branch may carry the branchall keys (the UI saves them; Branch has them)
_BRANCH_KEYS = {"branchone": {"summary", "expr", "modules", "skip_failure", "parallel"},
                "branchall": {"summary", "skip_failure", "modules", "parallel", "expr"}}
_RETRY_KEYS = {"constant": {"attempts", "seconds"},
               "exponential": {"attempts", "multiplier", "seconds", "random_factor"}}
PYTHON = ("python3",)
TYPESCRIPT = (*bun.LANGUAGES, "bunnative")  # on Bun (local_runner/bun.py); bunnative: Bun without npm installs
SQL = (pg_script.LANGUAGE,)  # run in the worker itself, no process (local_runner/pg_script.py)
NATIVETS_REFUSAL = ("nativets runs in Windmill's embedded JavaScript runtime, which passes a Date argument "
                    "as its string; the local runner has Bun only")
# Why each refused key is refused (UnsupportedFlow names it with this reason).
_UNSUPPORTED = {
    "suspend": "approval steps wait for a resume request the local runner cannot receive",
    "mock": "mocked steps are a Windmill UI testing aid, not implemented in the local runner",
    "cache_ttl": "a flow-level result cache is not implemented in the local runner (a step's cache_ttl is)",
}
_DEFAULT_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _refuse(where: str, keys, reason: str | None = None) -> None:
    raise UnsupportedFlow(f"{where}: unsupported key(s) {sorted(keys)}" + (f": {reason}" if reason else ""))


def _check_keys(where: str, obj: dict, allowed: set) -> None:
    extra = set(obj) - allowed
    if extra:
        reasons = sorted({_UNSUPPORTED[k] for k in extra if _UNSUPPORTED.get(k)})
        _refuse(where, extra, "; ".join(reasons) or None)


def _check_transform(where: str, t) -> None:
    kind = t.get("type") if isinstance(t, dict) else None
    if kind == "static":
        _check_keys(where, t, {"type", "value", "expr"})  # a static's stale `expr` is ignored
    elif kind == "javascript":
        _check_keys(where, t, {"type", "expr", "value"})  # a stale `value` beside `expr` is ignored
    else:
        _refuse(where, [f"type: {kind}"])


def _check_transforms(where: str, transforms: dict) -> None:
    for name, t in (transforms or {}).items():
        _check_transform(f"{where}.input_transforms.{name}", t)


def _language_refusal(language: str | None) -> str | None:
    if language in PYTHON or language in TYPESCRIPT or language in SQL or language is None:
        return None
    if language == "nativets":
        return NATIVETS_REFUSAL
    return f"the local runner runs python3, TypeScript ({', '.join(TYPESCRIPT)}) and postgresql steps only"


def validate_modules(where: str, modules: list) -> None:
    for m in modules or []:
        validate_module(f"{where}.{m.get('id', '?')}", m)


def validate_module(where: str, m: dict) -> None:
    if "id" not in m:
        # more_serde::default_id: a module saved without `id` gets a random 6-character one
        m["id"] = "".join(random.choice(_DEFAULT_ID_CHARS) for _ in range(6))
    _check_keys(where, m, _MODULE_KEYS)
    if (m.get("mock") or {}).get("enabled"):
        _refuse(where, ["mock"], _UNSUPPORTED["mock"])
    v = m.get("value") or {}
    kind = v.get("type")
    if kind not in _TYPE_KEYS:
        _refuse(where, [f"type: {kind}"])
    _check_keys(where, v, _TYPE_KEYS[kind])
    _check_transforms(where, v.get("input_transforms"))
    if kind == "rawscript" and (reason := _language_refusal(v.get("language"))):
        _refuse(where, [f"language: {v.get('language')}"], reason)
    if kind == "forloopflow" and isinstance(v.get("iterator"), dict):
        _check_transform(f"{where}.iterator", v["iterator"])
    if "retry" in m and m["retry"]:
        _check_keys(f"{where}.retry", m["retry"], set(_RETRY_KEYS) | {"retry_if"})
        for k, sub in m["retry"].items():
            if sub:
                _check_keys(f"{where}.retry.{k}", sub, _RETRY_KEYS.get(k, {"expr"}))
    if m.get("stop_after_if"):
        _check_keys(f"{where}.stop_after_if", m["stop_after_if"],
                    {"expr", "skip_if_stopped", "error_message", "error_include_result"})
    if m.get("stop_after_all_iters_if"):
        if kind not in ("forloopflow", "whileloopflow", "branchall"):
            _refuse(where, ["stop_after_all_iters_if"], "it applies to loops and branchall only")
        _check_keys(f"{where}.stop_after_all_iters_if", m["stop_after_all_iters_if"],
                    {"expr", "skip_if_stopped", "error_message", "error_include_result"})
    if m.get("skip_if"):
        _check_keys(f"{where}.skip_if", m["skip_if"], {"expr"})
    for t in ("sleep", "timeout"):
        if m.get(t) is not None and not isinstance(m[t], (int, float, dict)):
            _refuse(where, [t], f"{t} must be a number or an input transform")
        if isinstance(m.get(t), dict):
            _check_transform(f"{where}.{t}", m[t])
    if m.get("timeout") is not None and kind not in ("script", "rawscript"):
        _refuse(where, ["timeout"], "Windmill sets a timeout on the pushed sub-flow job, whose expiry the "
                                    "local runner does not model; put it on the script steps")
    if kind in _BRANCH_KEYS:
        for i, b in enumerate(v.get("branches") or []):
            _check_keys(f"{where}.branches[{i}]", b, _BRANCH_KEYS[kind])
            validate_modules(f"{where}.branches[{i}]", b.get("modules"))
        validate_modules(f"{where}.default", v.get("default"))
    if kind in ("forloopflow", "whileloopflow"):
        validate_modules(where, v.get("modules"))


def validate_flow_value(where: str, value: dict) -> None:
    _check_keys(f"{where}.value", value, _VALUE_KEYS)
    validate_modules(where, value.get("modules"))
    for special in ("failure_module", "preprocessor_module"):
        if value.get(special):
            validate_module(f"{where}.{special}", value[special])
            if value[special]["value"]["type"] not in ("script", "rawscript"):
                _refuse(f"{where}.{special}", [f"type: {value[special]['value']['type']}"])


def validate_flow(where: str, flow: dict) -> None:
    _check_keys(where, flow, _FLOW_KEYS)
    validate_flow_value(where, flow.get("value") or {})


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
    args: dict | None = None  # as the job was created
    error_handler: "Run | None" = None  # the workspace error handler's run for this failed job

    @property
    def job_count(self) -> int:
        return len(self.jobs)


class StepFailed(Exception):
    """A module failed; `result` is what Windmill records for it: the job's error result
    {"error": {...}}, or for a loop or branchall the array of its sub-job results
    (worker_flow.rs retrieve_flow_jobs_results). `handled`: a failure module already
    ran for it (inside a branch or iteration sub-flow), so no enclosing flow runs one
    again (has_triggered_error_handler); `retryable`: False for an EarlyStopError."""

    def __init__(self, result: Any, step_id: str | None, handled: bool = False, retryable: bool = True):
        err = result.get("error") if isinstance(result, dict) else None
        super().__init__((err or {}).get("message") if isinstance(err, dict) else "module failed")
        self.result, self.step_id, self.handled, self.retryable = result, step_id, handled, retryable


class StoppedEarly(Exception):
    """stop_after_if fired (without error_message): the flow ends with `result`."""

    def __init__(self, result: Any, skipped: bool):
        self.result, self.skipped = result, skipped


def execution_error(message: str) -> dict:
    """An error the flow engine itself raises (Error::ExecutionErr)."""
    return {"error": {"name": "ExecutionErr", "message": message}}


def derive_error(failed: Any) -> dict:
    """The `error` a failure module receives: windmill-jseval's ERROR_SETUP applied to
    the failed result (one failed item of an array: its `.error`; several: MultipleErrors)."""
    return js.evaluate("error", {"previous_result": failed})


def error_result(exc: BaseException) -> dict:
    """Windmill's result for a Python exception: {"error": {name, message, stack, extra}},
    `extra` being the exception's instance attributes when it has any (the Python wrapper,
    backend/windmill-worker/src/python_executor.rs@94bbd518: `extra = e.__dict__`,
    dumped with default=str)."""
    if isinstance(exc, (bun.TsScriptFailed, pg_script.SqlJobFailed)):  # the step's own error object
        return {"error": dict(exc.error)}
    error = {"name": type(exc).__name__, "message": str(exc), "stack": _stack(exc)}
    if vars(exc):
        error["extra"] = json.loads(json.dumps(vars(exc), default=str))
    return {"error": error}


def job_error(exc: BaseException) -> dict:
    """A failed job's result: the worker's own error for arguments it could not resolve,
    else the script's exception."""
    return exc.result if isinstance(exc, ArgumentError) else error_result(exc)


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
    flow_env: dict | None = None
    preview: bool = False  # a RawFlow job (run_flow_value)


class Runner:
    """Runs flows and scripts of the repository at `root`.

    `sleep(seconds)` is called for retry delays and step `sleep`s (tests pass a
    recorder); `random()` gives the retry jitter; `clock()` dates cached step results.
    """

    def __init__(self, root: str | Path = ".", config: Config | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = random.random,
                 max_parallel: int = 8,
                 on_progress: Callable[[str, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_while_iterations: int = 10_000):
        self.root = Path(root).resolve()
        self.config = config or Config.from_env()
        self.sleep, self.random, self.clock = sleep, random, clock
        self.max_parallel = max_parallel
        self.max_while_iterations = max_while_iterations  # a runaway while loop fails instead of hanging
        self._cache: dict[str, tuple[float, Any]] = {}  # step results kept for their cache_ttl
        self.on_progress = on_progress  # (job id, percent) for each wmill.set_progress
        self._flows: dict[str, dict] = {}
        self._modules: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._history: OrderedDict[str, dict] = OrderedDict()  # finished root flow runs, oldest first
        self._history_bytes = 0
        self.progress: dict[str, int] = {}
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        wmill_local.install()
        jobenv.install()

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
                raise RunnerError(f"no script at {path}")
            mod = importlib.import_module(path.replace("/", "."))
            with self._lock:
                self._modules[path] = mod
        return mod

    def _inline_module(self, flow_path: str, content: str):
        """A python3 rawscript: `!inline <file>` beside the flow, or the code itself."""
        if content.startswith("!inline "):
            file = self.flow_file(flow_path).parent / content.removeprefix("!inline ").strip()
            key, source, filename = str(file), None, str(file)
        else:
            key = "code:" + hashlib.sha256(content.encode()).hexdigest()
            source, filename = content, f"<rawscript {key[5:17]}>"
        with self._lock:
            mod = self._modules.get(key)
        if mod is None:
            name = "_wm_inline_" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex
            if source is None:
                spec = importlib.util.spec_from_file_location(name, filename)
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
            else:
                mod = types.ModuleType(name)
                exec(compile(source, filename, "exec"), mod.__dict__)  # noqa: S102 - the step's own code
            with self._lock:
                self._modules[key] = mod
        return mod

    # -- public API

    def run_flow(self, path: str, args: dict | None = None, *, event: dict | None = None,
                 job_id: str | None = None, schedule_path: str | None = None, email: str = USER_EMAIL) -> Run:
        """Run the flow at `path`. With `event` (a trigger's preprocessor event,
        {kind: webhook|http, ...}) the flow's preprocessor runs first and its result
        becomes the flow inputs; without it the preprocessor is skipped, as for runs
        from the Windmill UI (or API calls with skip_preprocessor=true). The finished run
        stays in the job history with the arguments it was created with."""
        flow = self.load_flow(path)
        if event is not None and not flow["value"].get("preprocessor_module"):
            raise RunnerError(f"{path} has no preprocessor_module to receive a trigger event")
        job_id = job_id or str(uuid.uuid4())
        log: list[Job] = []
        job = self._start(log, "flow", path, None, job_id, job_id=job_id)
        created_args = {"event": event} if event is not None else dict(args or {})
        try:
            success, result, skipped = self._flow_job(flow, path, job, dict(args or {}), event, log)
        finally:
            self._forget(log)
        run = Run(job_id, path, success, result, skipped, log, created_args)
        self._remember(run, created_args, job.started_at)
        run.error_handler = self._error_handler(run, job.started_at, is_flow=True, email=email,
                                                schedule_path=schedule_path, muted=flow.get("ws_error_handler_muted"),
                                                has_failure_module=bool(flow["value"].get("failure_module")))
        return run

    def _remember(self, run: Run, args: dict, started_at: float) -> None:
        created = dt.datetime.fromtimestamp(started_at, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        args_json = None if run.success else deep.dumps(args)
        with self._lock:
            self._history[run.id] = {
                "id": run.id, "type": "CompletedJob", "job_kind": "flow", "script_path": run.path,
                "success": run.success, "result": run.result, "is_skipped": run.skipped, "args": args_json,
                "created_at": created, "parent_job": None, "running": False, "canceled": False,
                "workspace_id": self.config.workspace}
            self._history_bytes += len(args_json or "")
            while len(self._history) > KEEP_HISTORY:
                self._history_bytes -= len(self._history.popitem(last=False)[1]["args"] or "")
            for job in self._history.values():  # oldest first
                if self._history_bytes <= HISTORY_ARGS_BYTES:
                    break
                self._history_bytes -= len(job["args"] or "")
                job["args"] = None

    @staticmethod
    def _with_args(job: dict) -> dict:
        return dict(job, args=deep.loads(job["args"]) if job["args"] else None)

    def list_jobs(self, query: dict) -> list[dict]:
        """GET jobs/completed/list: finished root flow runs, newest first, filtered by
        script_path_exact, success, created_after/created_before (ISO 8601), page and
        per_page (default 1000 here); args only with include_args=true."""
        with self._lock:
            jobs = list(reversed(self._history.values()))

        def keep(job: dict) -> bool:
            if query.get("script_path_exact") not in (None, job["script_path"]):
                return False
            if query.get("success") in ("true", "false") and job["success"] != (query["success"] == "true"):
                return False
            return (query.get("created_after", "") < job["created_at"]
                    and job["created_at"] < query.get("created_before", "~"))
        per_page, page = int(query.get("per_page") or 1000), int(query.get("page") or 1)
        chosen = [j for j in jobs if keep(j)][(page - 1) * per_page: page * per_page]
        if query.get("include_args") == "true":
            return [self._with_args(j) for j in chosen]
        return [{k: v for k, v in j.items() if k != "args"} for j in chosen]

    def run_flow_value(self, value: dict, args: dict | None = None, *, path: str = "preview") -> Run:
        """Run an OpenFlow `value` given in memory, as Windmill runs a RawFlow job (a flow
        preview; Windmill's own tests push their flows this way). `path` names it in the
        job records; `!inline` rawscripts are not available to it."""
        validate_flow_value(path, value)
        job_id = str(uuid.uuid4())
        log: list[Job] = []
        job = self._start(log, "flowpreview", path, None, job_id, job_id=job_id)
        try:
            success, result, skipped = self._flow_job({"value": value}, path, job, dict(args or {}), None, log,
                                                      preview=True)
        finally:
            self._forget(log)
        return Run(job_id, path, success, result, skipped, log)

    def run_script(self, path: str, args: dict | None = None, *, preprocess: bool = False,
                   schedule_path: str | None = None, email: str = USER_EMAIL) -> Run:
        """Run the script at `path` as a job of its own. With `preprocess`, its
        `preprocessor` runs first on the arguments and its result becomes them (a script
        run through the API with its preprocessor, jobs.rs apply_preprocessor).
        `schedule_path`: the schedule that started it (passed to the error handler)."""
        run = self._run_job("script", path, self._script_code(path), args, preprocess)
        run.error_handler = self._error_handler(run, run.jobs[0].started_at, is_flow=False, email=email,
                                                schedule_path=schedule_path, muted=self._script_muted(path))
        return run

    def run_code(self, language: str, content: str, args: dict | None = None) -> Run:
        """Run code as a job of its own (Windmill's JobPayload::Code: a script preview)."""
        if reason := _language_refusal(language):
            raise UnsupportedFlow(f"code: unsupported key(s) ['language: {language}']: {reason}")
        code = self._raw_code("preview", {"language": language, "content": content})
        return self._run_job("preview", "preview", code, args, False)

    def _run_job(self, kind, path, code, args, preprocess) -> Run:
        job_id = str(uuid.uuid4())
        log: list[Job] = []
        job = self._start(log, kind, path, None, job_id, job_id=job_id)
        try:
            args = args or {}  # each job resolves its own arguments (_call)
            if preprocess:
                out = code("preprocessor", args, job, path)
                args = out if isinstance(out, dict) else ({} if out is None else {"value": out})
            self._finish(job, True, code("main", args, job, path))
        except Exception as e:  # noqa: BLE001 - a script error is the job's result
            self._finish(job, False, self._error_of(e, None))
        finally:
            self._forget(log)
        return Run(job_id, path, job.success, job.result, False, log, dict(args or {}))

    # -- the workspace error handler

    def _script_muted(self, path: str) -> bool:
        """`ws_error_handler_muted` of the script's metadata (`<path>.script.yaml`)."""
        meta = self.root / f"{path}.script.yaml"
        return bool(meta.exists() and (yaml.safe_load(meta.read_text()) or {}).get("ws_error_handler_muted"))

    def _error_handler(self, run: Run, started_at: float, *, is_flow: bool, email: str, schedule_path: str | None,
                       muted: bool | None, has_failure_module: bool = False) -> Run | None:
        """Call the workspace error handler for a failed root job, as Windmill does
        (windmill-labs/windmill backend/windmill-queue/src/jobs.rs; an Enterprise feature).
        When: a root job (run_flow / run_script; never a preview, a flow step or a
        sub-flow), a script or a flow without a `failure_module` (a flow with one handles
        its own errors), not muted (`ws_error_handler_muted`), and not a job of the error
        handler itself: `add_completed_job` in the last public version of the file; at
        @7f41b1ef that dispatch moved to the private `jobs_ee::apply_completed_job_error_handlers`.
        With what: `push_error_handler`@7f41b1ef: the failed job's result (`sanitize_result`:
        an object's keys, anything else as `error`), then `workspace_id, job_id, path,
        is_flow, started_at, email`, `schedule_path` for a scheduled job, then the
        setting's `extra_args`, later keys winning. It runs as `error_handler@windmill.dev`."""
        setting = self.config.error_handler
        if (run.success or not setting or not setting.get("path") or muted or (is_flow and has_failure_module)
                or email == ERROR_HANDLER_EMAIL):
            return None
        result = deep.loads(deep.dumps(run.result))
        extra = {**({"schedule_path": schedule_path} if schedule_path else {}),
                 "workspace_id": self.config.workspace, "job_id": run.id, "path": run.path, "is_flow": is_flow,
                 "started_at": dt.datetime.fromtimestamp(started_at, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
                 "email": email, **(setting.get("extra_args") or {})}
        args = {**(result if isinstance(result, dict) else {"error": result}), **extra}
        kind, _, path = setting["path"].partition("/") if setting["path"].startswith(("script/", "flow/")) \
            else ("script", "/", setting["path"])
        handler = (self.run_flow(path, args, email=ERROR_HANDLER_EMAIL) if kind == "flow"
                   else self.run_script(path, args, email=ERROR_HANDLER_EMAIL))
        if not handler.success:  # Windmill: report_critical_error, never the handler again
            print(f"CRITICAL workspace error handler {setting['path']} failed for job {run.id}: "
                  f"{json.dumps(handler.result, default=str)[:500]}", file=sys.stderr)
        return handler

    def _forget(self, log: list[Job]) -> None:
        # only running jobs are looked up (by the wmill client); the Run keeps the log
        with self._lock:
            for j in log:
                self._jobs.pop(j.id, None)

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _start_flow(self, path: str, query_string: str, headers: list, body: bytes) -> str:
        """A script's POST to jobs/run/f/<path> (wmill.run_flow_async, or its own HTTP
        call): a root flow job of its own (Windmill's do_not_track_in_parent default),
        run to its end before the id is returned. Its arguments are those Windmill's
        API makes of the request: a flow with a preprocessor gets the webhook event
        unless the query says skip_preprocessor=true (triggers.webhook_call)."""
        args, event = triggers.webhook_call(query_string, headers, body, has_preprocessor=self.has_preprocessor(path))
        return self.run_flow(path, args, event=event).id

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
            run = self._history.get(job_id)
        return run and self._with_args(run)

    # -- flows

    def _flow_job(self, flow, path, job: Job, args, event, log, preview=False) -> tuple[bool, Any, bool]:
        value = flow["value"]
        # worker_flow.rs: a trigger run's args are {"event": ...} until its preprocessor
        # succeeds (the failure module of a failed preprocessor sees them)
        flow_args = {"event": event} if event is not None else args
        scope = _Scope(path, job.id, job.root, flow_args, {}, log, value.get("failure_module"), value.get("flow_env"),
                       preview)
        return self._run_flow_value(value.get("modules") or [], scope, job, event=event,
                                    preprocessor=value.get("preprocessor_module"), skip_expr=value.get("skip_expr"))

    def _run_flow_value(self, modules, scope: "_Scope", job: Job, *, event=None, preprocessor=None,
                        skip_expr=None) -> tuple[bool, Any, bool]:
        """One flow job (a flow by path, or a branch / iteration sub-flow): its modules,
        then its failure module if one failed. Returns (success, result, skipped)."""
        try:
            if event is not None:
                out = self._script_step(preprocessor, scope, {"event": event}, job.id, kind="preprocessor",
                                        flow_input={"event": event})
                # worker_flow.rs: an object result becomes the args, null -> {}, else {"value": r}
                scope.flow_input = out if isinstance(out, dict) else ({} if out is None else {"value": out})
            if skip_expr and self._bool(skip_expr, scope, scope.flow_input, {}, "skip_expr"):
                # push_next_flow_job: the flow's skip_expr ends it at once, "stopped early"
                self._finish(job, True, "stopped early", True)
                return True, "stopped early", True
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
        module returns {recover: true}; the flow's result is the module's result. Its
        `previous_result` is the failed result; `error` is derived from it (windmill-jseval)."""
        err = derive_error(failed.result)
        if isinstance(err, dict) and failed.step_id and "step_id" not in err:
            err = dict(err, step_id=failed.step_id)
        if self._failure_skipped(scope, failed.result, job):
            self._finish(job, False, failed.result)
            return False, failed.result, False
        try:
            out = self._run_attempts(scope.failure_module, scope, scope.flow_input, failed.result, job.id,
                                     kind="failure", base_args={"error": err})
        except StepFailed as f2:
            self._finish(job, False, f2.result)
            return False, f2.result, False
        ok = isinstance(out, dict) and out.get("recover") is True
        self._finish(job, ok, out)
        return ok, out, False

    def _failure_skipped(self, scope: _Scope, failed: Any, parent: Job) -> bool:
        """worker_flow.rs@8f7d467e push_next_flow_job: after a failure, `module` becomes the
        failure module and its `skip_if` is evaluated like any step's (compute_bool_from_expr,
        result = previous_result = the failed result, `error` derived from it); a true one
        pushes JobPayload::Identity (compute_next_flow_transform `if is_skipped`), which the
        worker answers with its previous_result, no process. The flow still fails (success &&
        !is_failure_step) with that result."""
        m = scope.failure_module
        sid = m.get("id") or "failure"
        if not (m.get("skip_if") and self._bool(m["skip_if"]["expr"], scope, scope.flow_input,
                                                 self._context(scope, failed, result=failed), sid)):
            return False
        job = self._start(scope.log, "identity", f"{scope.path}/{sid}", parent.id, scope.root, step_id=sid)
        self._finish(job, True, failed, skipped=True)
        return True

    def _run_modules(self, modules, scope: _Scope, flow_input, parent):
        prev = flow_input  # step 0 sees the flow args
        for i, m in enumerate(modules):
            if i:
                self._sleep_between(modules[i - 1], scope, flow_input, prev)
            prev = self._run_module(m, scope, flow_input, prev, parent)
        return prev

    def _context(self, scope: _Scope, previous, **extra) -> dict:
        return {"results": scope.results, "previous_result": previous, **extra}

    def _eval(self, expr: str, scope: _Scope, flow_input, context: dict, what: str):
        """An expression's value: passed through where Windmill's worker passes the stored
        JSON through (local_runner/passthrough.py), else evaluated in JavaScript with only
        the scope it reads. Its failure fails the module (ExecutionErr) instead of escaping
        the runner (worker_flow.rs transform_input: "Error during isolated evaluation of
        expression")."""
        try:
            whole = {**context, "flow_input": flow_input}
            value = passthrough.lookup(expr, whole)
            if value is not passthrough.MISSING:
                return value
            return js.evaluate(expr, self._narrow(expr, whole), flow_input=None, flow_env=scope.flow_env)
        except js.ExpressionError as e:
            raise StepFailed(execution_error(
                f"Error during isolated evaluation of expression `{expr}`:\n{e}"), what) from None

    @staticmethod
    def _narrow(expr: str, whole: dict) -> dict:
        """passthrough.narrow, keeping `previous_result` for an expression that derives
        `error` from it (windmill-jseval adds it when the text mentions `error`)."""
        narrowed = passthrough.narrow(expr, whole)
        if "error" in expr and "previous_result" in whole:
            narrowed["previous_result"] = whole["previous_result"]
        return narrowed

    def _bool(self, expr: str, scope: _Scope, flow_input, context: dict, what: str) -> bool:
        """worker_flow.rs compute_bool_from_expr: Boolean(expr), with result =
        previous_result = the value under test."""
        try:
            narrowed = self._narrow(expr, {**context, "flow_input": flow_input})
            return js.truthy(expr, narrowed, flow_input=None, flow_env=scope.flow_env)
        except js.ExpressionError as e:
            raise StepFailed(execution_error(f"Error during evaluation of expression `{expr}`:\n{e}"), what) from None

    def _run_module(self, m: dict, scope: _Scope, flow_input, previous, parent):
        sid = m["id"]
        if m.get("skip_if") and self._bool(m["skip_if"]["expr"], scope, flow_input,
                                           self._context(scope, previous, result=previous), sid):
            # a skipped step runs as an identity job passing previous_result through
            job = self._start(scope.log, "identity", f"{scope.path}/{sid}", parent, scope.root, step_id=sid)
            result = self._finish(job, True, previous, skipped=True)
            scope.results[sid] = result
            return result
        try:
            result = self._run_attempts(m, scope, flow_input, previous, parent)
        except StepFailed as f:
            if m.get("continue_on_error") and f.retryable:
                scope.results[sid] = f.result
                return f.result
            raise
        scope.results[sid] = result
        self._stop_after_if(m, scope, flow_input, result)
        self._stop_after_if(m, scope, flow_input, result, key="stop_after_all_iters_if")
        return result

    def _stop_after_if(self, m, scope, flow_input, result, key="stop_after_if"):
        """worker_flow.rs update_flow_status_after_job_completion_internal: stop_after_if is
        evaluated with result = previous_result = the module's result, never for a branchall
        or a parallel loop module; with `error_message` the module fails with EarlyStopError
        (the failure module runs, no retry)."""
        stop = m.get(key)
        v = m["value"]
        if not stop:
            return
        if key == "stop_after_if" and v["type"] in ("branchall", "forloopflow", "whileloopflow"):
            return  # never on a branchall; on a loop, per iteration (_loop_breaks)
        # stop_after_all_iters_if (evaluate_stop_after_all_iters_if): once a loop or branchall
        # is done, with result = previous_result = the array of its iterations' results
        if not self._bool(stop["expr"], scope, flow_input, self._context(scope, result, result=result), m["id"]):
            return
        msg = stop.get("error_message")
        if msg is not None:  # get_stop_after_if_data
            message = msg or f"stop after if: {stop['expr']}"
            raise StepFailed({"error": {"name": "EarlyStopError", "message": message}}, m["id"], retryable=False)
        raise StoppedEarly(result, bool(stop.get("skip_if_stopped")))

    def _sleep_between(self, m, scope, flow_input, previous):
        """push_next_flow_job: before a step, the previous module's `sleep` (a number or an
        input transform seeing result = previous_result, without `results`) delays it; an
        integer is seconds, a float seconds with millisecond precision."""
        s = m.get("sleep")
        if s is None:
            return
        if isinstance(s, dict):
            if s.get("type") == "static":
                s = s.get("value")
            else:
                s = self._eval(s.get("expr") or "", scope, flow_input,
                               {"result": previous, "previous_result": previous}, m["id"])
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
            raise StepFailed(execution_error(f"Expected an integer, found: {json.dumps(s)}"), m["id"])
        if s:
            self.sleep(float(s))

    def _run_attempts(self, m, scope: _Scope, flow_input, previous, parent, *, kind=None, base_args=None):
        """Run a module, retrying it per its `retry` whatever its type (worker_flow.rs
        evaluate_retry / next_retry): a retried loop or branchall starts again from its
        first iteration or branch; a retried script reuses its first arguments
        (get_args_from_id) and sees previous_result = its failed result."""
        retry = m.get("retry")
        fail_count = 0
        args = None
        while True:
            try:
                if m["value"]["type"] in ("script", "rawscript"):
                    if args is None:
                        args = dict(base_args or {})
                        args.update(self._transform(m["value"].get("input_transforms"), scope, flow_input,
                                                    previous, m["id"] or kind))
                    return self._script_step(m, scope, args, parent, kind=kind, flow_input=flow_input,
                                             attempt=fail_count)
                return self._dispatch(m, scope, flow_input, previous, parent)
            except StepFailed as f:
                if not f.retryable or not self._retry_wanted(retry, f.result, scope, flow_input):
                    raise
                delay = self._retry_delay(retry, fail_count)
                if delay is None:
                    raise
                fail_count += 1
                previous = f.result
                self.sleep(delay)

    def _dispatch(self, m, scope, flow_input, previous, parent):
        kind = m["value"]["type"]
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
        if kind == "whileloopflow":
            return self._whileloop(m, scope, flow_input, previous, parent)
        raise UnsupportedFlow(f"{scope.path}.{m.get('id')}: type {kind}")

    def _transform(self, transforms, scope, flow_input, previous, sid) -> dict:
        """worker_flow.rs transform_input: statics as they are (a static without value is
        null), expressions with `params` (always {}), `previous_result` and `results`."""
        out = {}
        context = self._context(scope, previous, params={})
        for name, t in (transforms or {}).items():
            if t["type"] == "static":
                out[name] = t.get("value")
            else:
                out[name] = self._eval(t.get("expr") or "", scope, flow_input, context, sid)
        return out

    # -- script steps

    def _script_step(self, m, scope: _Scope, args, parent, *, kind=None, flow_input=None, attempt=0):
        v, sid = m["value"], m.get("id") or kind
        if v["type"] == "script":
            code, label, job_kind = self._script_code(v["path"]), v["path"], "script"
        else:
            code, label, job_kind = self._raw_code(scope.path, v), v.get("path") or f"{scope.path}/{sid}", "rawscript"
        fn_name = "preprocessor" if kind == "preprocessor" else "main"
        timeout = self._timeout(m, scope, flow_input)
        cache_key = self._cache_key(m, label, v, args)
        if cache_key and (hit := self._cache_get(cache_key)) is not _SAME:
            job = self._start(scope.log, kind or job_kind, label, parent, scope.root, step_id=sid, attempt=attempt)
            return self._finish(job, True, hit)
        job = self._start(scope.log, kind or job_kind, label, parent, scope.root, step_id=sid, attempt=attempt)
        try:
            call = lambda: code(fn_name, args, job, scope.path)  # noqa: E731 - _call resolves the arguments
            result = self._with_timeout(call, timeout) if timeout else call()
        except Exception as e:  # noqa: BLE001 - the error is the job's result
            raise StepFailed(self._finish(job, False, self._error_of(e, sid)), sid) from None
        if cache_key:
            self._cache_put(cache_key, m["cache_ttl"], result)
        return self._finish(job, True, result)

    @staticmethod
    def _error_of(e: Exception, sid) -> dict:
        """The job's error result. Windmill's wrappers add the flow step's id
        (WM_FLOW_STEP_ID) as `step_id` (python_executor.rs, bun_executor.rs wrappers);
        arguments the worker could not resolve are its own error (job_error)."""
        out = job_error(e)
        if isinstance(e, (ArgumentError, pg_script.SqlJobFailed)):  # the worker's error_to_value: no step_id
            return out
        if sid and "step_id" not in out["error"]:
            out["error"]["step_id"] = sid
        return out

    def _timeout(self, m, scope, flow_input) -> float | None:
        """worker_flow.rs evaluated_timeout: a number, or an input transform (an integer
        of seconds, never negative)."""
        t = m.get("timeout")
        if isinstance(t, dict):
            t = t.get("value") if t.get("type") == "static" else self._eval(
                t.get("expr") or "", scope, flow_input, {}, m.get("id"))
        if t is None:
            return None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0:
            raise StepFailed(execution_error("Timeout value cannot be negative" if isinstance(t, (int, float))
                                             else f"Error parsing timeout as i32: {json.dumps(t)}"), m.get("id"))
        return float(t)

    # cache_ttl (worker_flow.rs raw_script_to_payload / script_to_payload pass the module's
    # cache_ttl to the step job; the worker's cached_result_path keys a cached result by the
    # script and its arguments and serves it for cache_ttl seconds)
    def _cache_key(self, m, label, v, args):
        if not m.get("cache_ttl"):
            return None
        return hashlib.sha256(deep.dumps([label, v.get("content") or v.get("path"), args]).encode()).hexdigest()

    def _cache_get(self, key):
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > self.clock():
            return hit[1]
        return _SAME

    def _cache_put(self, key, ttl, result):
        with self._lock:
            self._cache[key] = (self.clock() + float(ttl), result)

    def _retry_wanted(self, retry: dict | None, failed: Any, scope: _Scope, flow_input) -> bool:
        """retry.retry_if, evaluated on each failure before any delay (worker_flow.rs
        evaluate_retry): false means no retry. Its scope (compute_bool_from_expr):
        `result` = `previous_result` = the failed result, `error` derived from it,
        `flow_input` and `flow_env`; `results` is not available there."""
        if not retry:
            return False
        cond = retry.get("retry_if")
        if not cond:
            return True
        return self._bool(cond["expr"], scope, flow_input, {"result": failed, "previous_result": failed},
                          "retry_if")

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

    def _with_timeout(self, call, seconds):
        box: dict = {}

        def target():
            try:
                box["r"] = call()
            except BaseException as e:  # noqa: BLE001
                box["e"] = e
        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(seconds)
        if t.is_alive():
            raise TimeoutError(f"Timeout error: step exceeded {seconds:g}s")
        if "e" in box:
            raise box["e"]
        return box["r"]

    def _script_code(self, path: str):
        """The callable for a script by path: `f/x/y.py`, `f/x/y.ts` on Bun, or `f/x/y.pg.sql`."""
        if not (self.root / f"{path}.py").exists():
            if (sql := self.root / f"{path}{pg_script.EXTENSION}").is_file():
                return self._sql_code(path, sql.read_text())
            if ts := bun.script_file(self.root, path):
                return self._ts_code(ts)
        mod = self._script_module(path)
        return lambda fn, args, job, flow_path: self._call(mod, fn, args, job, flow_path)

    def _raw_code(self, flow_path: str, v: dict):
        if v.get("language") in SQL:
            content = v.get("content") or ""
            if content.startswith("!inline "):
                content = (self.flow_file(flow_path).parent / content.removeprefix("!inline ").strip()).read_text()
            return self._sql_code(v.get("path") or f"{flow_path}/rawscript", content)
        if v.get("language") in TYPESCRIPT:
            return self._ts_code(bun.rawscript(self.flow_file(flow_path).parent, v.get("content") or ""))
        mod = self._inline_module(flow_path, v.get("content") or "")
        return lambda fn, args, job, fp: self._call(mod, fn, args, job, fp)

    def _ts_code(self, ts):
        def run(fn, args, job, flow_path):
            return self._as_job(job, flow_path, args, lambda ctx, env, resolved: ts.call(
                fn, resolved, ctx, root_job=job.root, step_id=job.step_id, flow_path=flow_path))
        return run

    def _sql_code(self, label: str, code: str):
        """A postgresql job: run by the worker itself (pg_script.run), its arguments resolved
        first like any job's (pg_executor.rs build_args_values)."""
        def run(fn, args, job, flow_path):
            if fn != "main":
                raise RunnerError(f"{label}: a postgresql script has no {fn}()")
            return self._as_job(job, flow_path, args,
                                lambda ctx, env, resolved: self._run_sql(label, code, resolved, job))
        return run

    def _run_sql(self, label: str, code: str, args: dict, job: Job):
        """One postgresql job's statements (bench/wm_jobs.py records these jobs apart)."""
        return _jsonable(pg_script.run(code, args, self.config.get_resource))

    def _job_context(self, job: Job, flow_path: str):
        return wmill_local.JobContext(self.config, job.id, job.parent, f"state/{flow_path}/{job.step_id or 'main'}",
                                      self._job_view, self.progress, self._start_flow, self.on_progress,
                                      list_jobs=self.list_jobs, load_flow=self.load_flow)

    def _as_job(self, job: Job, flow_path: str, args: dict, run: Callable):
        """Run one job as a worker does: its arguments resolved (Config.resolve_args),
        with its own environment (WM_TOKEN, WM_JOB_ID, ... jobenv) and its token known to
        the REST API; `run(ctx, env, resolved_args)` is the code."""
        ctx = self._job_context(job, flow_path)
        api = jobenv.api_server()
        token = api.register(ctx)
        try:
            env = self._job_env(job, flow_path, token, api.url, ctx.state_path)
            public = os.environ.get("WM_BASE_URL")
            args = self.config.resolve_args(args, {**env, "WM_BASE_URL": public} if public else env)
            return run(ctx, env, args)
        finally:
            api.forget(token)

    def _job_env(self, job: Job, flow_path: str, token: str, api_url: str, state_path: str) -> dict:
        """The reserved variables a worker gives a job (windmill-common variables.rs
        `get_reserved_variables`), also its environment, plus BASE_INTERNAL_URL: the API
        the job calls. WM_BASE_URL, the instance's public address, stays whatever the
        process environment says (`make serve` knows its own; unset otherwise)."""
        in_flow = job.parent is not None
        return {"WM_WORKSPACE": self.config.workspace, "WM_TOKEN": token, "WM_JOB_ID": job.id,
                "WM_JOB_PATH": job.path, "WM_FLOW_JOB_ID": job.parent or "", "WM_ROOT_FLOW_JOB_ID": job.root,
                "WM_FLOW_PATH": flow_path if in_flow else "", "WM_FLOW_STEP_ID": job.step_id or "",
                "WM_STATE_PATH": state_path, "WM_PERMISSIONED_AS": "u/local", "WM_EMAIL": "local@windmill.dev",
                "WM_USERNAME": "local", "BASE_INTERNAL_URL": api_url}

    def _call(self, mod, fn_name: str, args: dict, job: Job, flow_path: str):
        """A Python job: `fn` called as Windmill's Python wrapper does (by name, defaults
        for missing args; a `datetime` / `bytes` parameter given a string gets it parsed /
        base64-decoded: python_executor.rs wrapper), its arguments resolved first."""
        fn = getattr(mod, fn_name, None)
        if fn is None:
            raise RunnerError(f"{mod.__name__} has no {fn_name}()")
        return self._as_job(job, flow_path, args, lambda ctx, env, resolved: self._invoke(fn, fn_name, resolved, ctx,
                                                                                           env))

    @staticmethod
    def _invoke(fn, fn_name: str, args: dict, ctx, env: dict):
        kwargs = {}
        for name, p in inspect.signature(fn).parameters.items():
            if name in args:
                kwargs[name] = _python_arg(p.annotation, args[name])
            elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                raise TypeError(f"{fn_name}() missing required argument: '{name}'")
        with wmill_local.running(ctx), jobenv.job_environment(env):
            return _jsonable(fn(**kwargs))

    # -- composite modules

    def _subflow(self, m, scope: _Scope, flow_input, previous, parent):
        """A `type: flow` step: a flow job of its own. A stop inside it ends that flow
        only (worker_flow.rs ignores stop_early_override for a flow step), and its own
        failure module having run does not stop the caller's (has_triggered_error_handler
        is reset for a flow step)."""
        path = m["value"]["path"]
        args = self._transform(m["value"].get("input_transforms"), scope, flow_input, previous, m["id"])
        flow = self.load_flow(path)
        job = self._start(scope.log, "flow", path, parent, scope.root, step_id=m["id"])
        ok, result, _skipped = self._flow_job(flow, path, job, args, None, scope.log)
        if not ok:
            raise StepFailed(result, m["id"])
        return result

    def _sub_scope(self, scope: _Scope, flow_input, own_results: bool = False) -> _Scope:
        """A branch or iteration sub-flow (RawFlow) carries the flow's failure module
        (payload_from_modules(..., flow.failure_module, ...)); its steps' results are
        the root flow's (flow_leaf_jobs), except in a parallel loop, whose iterations
        are innermost roots of their own."""
        results = dict(scope.results) if own_results else scope.results
        return _Scope(scope.path, scope.job_id, scope.root, flow_input, results, scope.log,
                      scope.failure_module, scope.flow_env, scope.preview)

    def _run_sub(self, modules, scope, flow_input, parent, label, *, own_results=False):
        """One branch / iteration sub-flow job, its first step seeing its flow input as
        previous result. Returns (success, result, stopped, skipped, handled)."""
        job = self._start(scope.log, "flowpreview", f"{scope.path}/{label}", parent, scope.root, step_id=label)
        sub = self._sub_scope(scope, flow_input, own_results)
        try:
            result = self._run_modules(modules, sub, flow_input, job.id)
        except StoppedEarly as s:
            self._finish(job, True, s.result, s.skipped)
            return True, s.result, True, s.skipped, False
        except StepFailed as f:
            if f.handled or not sub.failure_module:
                self._finish(job, False, f.result)
                return False, f.result, False, False, f.handled
            ok, result, _ = self._failure(sub, f, job)
            # the sub-flow's failure module ran: the caller's will not run again, and
            # the module fails even when it recovered (worker_flow.rs: success && !is_failure_step)
            return False, result, False, False, True
        self._finish(job, True, result)
        return True, result, False, False, False

    def _branchone(self, m, scope, flow_input, previous, parent):
        v = m["value"]
        modules, label = v.get("default") or [], f"{m['id']}/default"
        context = self._context(scope, previous, result=previous)
        for i, b in enumerate(v.get("branches") or []):
            if self._bool(b.get("expr") or "", scope, flow_input, context, m["id"]):
                modules, label = b.get("modules") or [], f"{m['id']}/branch-{i}"
                break
        if not modules:
            # worker_flow.rs payload_from_modules: an empty branch pushes no job
            # (EmptyInnerFlows); the module succeeds with no flow jobs, whose results are []
            return []
        ok, result, stopped, skipped, handled = self._run_sub(modules, scope, flow_input, parent, label)
        if not ok:
            raise StepFailed(result, m["id"], handled=handled)
        if stopped:  # a stop inside the chosen branch stops the flow with its result
            raise StoppedEarly(result, skipped)
        return result

    def _branchall(self, m, scope, flow_input, previous, parent):
        """Each branch a sub-flow job (its first step sees the flow input as previous
        result); the module's result, on success and failure, is the array of the
        branch jobs' results in order."""
        v = m["value"]
        branches = v.get("branches") or []
        if not branches:
            return []

        def one(i):
            return self._run_sub(branches[i].get("modules") or [], scope, flow_input, parent, f"{m['id']}/branch-{i}")
        if v.get("parallel"):
            with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(branches))) as ex:
                outcomes = list(ex.map(one, range(len(branches))))
            results = [o[1] for o in outcomes]
            failed = [i for i, o in enumerate(outcomes) if not o[0] and not branches[i].get("skip_failure")]
            if failed:
                # parallel: the error handler already ran at the leaves when there is one
                raise StepFailed(results, m["id"], handled=bool(scope.failure_module))
            return results
        results = []
        for i in range(len(branches)):
            ok, result, stopped, skipped, handled = one(i)
            results.append(result)
            if stopped:
                # a stop inside a sequential branchall ends the flow with the branchall's array
                raise StoppedEarly(results, skipped)
            if not ok and not branches[i].get("skip_failure"):
                raise StepFailed(results, m["id"], handled=handled)
        return results

    def _iterator(self, m, scope, flow_input, previous):
        it = m["value"].get("iterator") or {"type": "static", "value": None}
        if it.get("type") == "static":
            items = it.get("value")
        else:
            items = self._eval(it.get("expr") or "", scope, flow_input,
                               self._context(scope, previous, result=previous), m["id"])
        if not isinstance(items, list):
            raise StepFailed(execution_error(
                f"Expected an array value in the iterator expression, found: {_serde_not_a_sequence(items)}"), m["id"])
        return items

    def _forloop(self, m, scope, flow_input, previous, parent):
        v = m["value"]
        items = self._iterator(m, scope, flow_input, previous)
        if not items:
            return []
        modules = v.get("modules") or []
        if not modules:
            return []
        parallel = bool(v.get("parallel"))
        # worker_flow.rs: a flow preview (RawFlow) never collapses a loop body
        simple = not parallel and not scope.preview and _is_simple(modules) and not scope.failure_module

        def one(index):
            iter_input = _with_iter(flow_input, {"index": index, "value": items[index]})
            if simple:
                # is_simple_modules: the single script is pushed directly, no sub-flow job;
                # its transforms see the loop's previous result
                try:
                    return True, self._run_module(modules[0], scope, iter_input, previous, parent), False, False, False
                except StepFailed as f:
                    return False, f.result, False, False, f.handled
            return self._run_sub(modules, scope, iter_input, parent, f"{m['id']}/iter-{index}", own_results=parallel)
        if parallel:
            n = self._parallelism(v, scope, flow_input, previous, m["id"]) or self.max_parallel
            with ThreadPoolExecutor(max_workers=max(1, min(n, len(items)))) as ex:
                outcomes = list(ex.map(one, range(len(items))))
            results = [o[1] for o in outcomes]
            if not v.get("skip_failures") and not all(o[0] for o in outcomes):
                raise StepFailed(results, m["id"], handled=bool(scope.failure_module))
            return results
        results = []
        for i in range(len(items)):
            ok, result, stopped, _skipped, handled = one(i)
            results.append(result)
            if stopped:
                break  # a stop inside a loop breaks the loop only
            if not ok and not v.get("skip_failures"):
                raise StepFailed(results, m["id"], handled=handled)
            if ok and self._loop_breaks(m, scope, flow_input, result, results):
                break
        return results

    def _loop_breaks(self, m, scope, flow_input, result, results) -> bool:
        """A sequential loop module's own stop_after_if, evaluated after each successful
        iteration with result = that iteration's result and `all_iters` = the results so
        far: true ends the loop, never the flow (worker_flow.rs: `if stop_early && is_loop`
        resets the stop once the loop is done)."""
        stop = m.get("stop_after_if")
        if not stop:
            return False
        context = self._context(scope, result, result=result)
        if "all_iters" in stop["expr"]:
            context["all_iters"] = list(results)
        return self._bool(stop["expr"], scope, flow_input, context, m["id"])

    def _parallelism(self, v, scope, flow_input, previous, sid) -> int | None:
        p = v.get("parallelism")
        if isinstance(p, dict):
            p = p.get("value") if p.get("type") == "static" else self._eval(
                p.get("expr") or "", scope, flow_input, {"result": previous, "previous_result": previous}, sid)
        return int(p) if p else None

    def _whileloop(self, m, scope, flow_input, previous, parent):
        """worker_flow.rs WhileloopFlow: iterations (sub-flows, flow_input.iter = {index,
        value: index}) run until a stop_after_if inside one, or the loop's own, fires; a
        failed iteration ends it unless skip_failures. Its result is the array of the
        iterations' results."""
        v = m["value"]
        modules = v.get("modules") or []
        if not modules:
            return []
        results = []
        index = 0
        while True:
            iter_input = _with_iter(flow_input, {"index": index, "value": index})
            ok, result, stopped, _skipped, handled = self._run_sub(modules, scope, iter_input, parent,
                                                                   f"{m['id']}/iter-{index}")
            results.append(result)
            if stopped:
                return results
            if not ok and not v.get("skip_failures"):
                raise StepFailed(results, m["id"], handled=handled)
            if ok and self._loop_breaks(m, scope, flow_input, result, results):
                return results
            index += 1
            if index >= self.max_while_iterations:
                raise StepFailed(execution_error(
                    f"while loop {m['id']} did not stop after {index} iterations (Runner.max_while_iterations)"),
                    m["id"])


def _with_iter(flow_input: dict, value: dict) -> dict:
    """worker_flow.rs insert_iter_arg: an enclosing loop's `iter` moves to `iter_parent`
    (recursively), the new one is `iter`."""
    args = dict(flow_input)
    key, val = "iter", value
    while key in args:
        args[key], val = val, args[key]
        key = f"{key}_parent"
    args[key] = val
    return args


def _is_simple(modules) -> bool:
    """worker_flow.rs is_simple_modules (without the failure-module condition)."""
    if len(modules) != 1:
        return False
    m = modules[0]
    return (m["value"]["type"] in ("script", "rawscript")
            and not any(m.get(k) for k in ("sleep", "suspend", "cache_ttl", "retry", "stop_after_if",
                                            "stop_after_all_iters_if", "skip_if")))


def _serde_not_a_sequence(value) -> str:
    """serde_json's message for a non-array where Vec<_> is expected."""
    if isinstance(value, dict):
        kind = "map"
    elif isinstance(value, str):
        kind = f"string {json.dumps(value)}"
    elif isinstance(value, bool):
        kind = f"boolean `{str(value).lower()}`"
    elif isinstance(value, int):
        kind = f"integer `{value}`"
    elif isinstance(value, float):
        kind = f"floating point `{value}`"
    else:
        return "invalid type: null, expected a sequence at line 1 column 4"
    return f"invalid type: {kind}, expected a sequence at line 1 column 0"


def _python_arg(annotation, value):
    if isinstance(value, str) and annotation in (dt.datetime, "datetime"):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, str) and annotation in (bytes, "bytes"):
        try:
            return base64.b64decode(value)
        except ValueError:
            return value
    return value
