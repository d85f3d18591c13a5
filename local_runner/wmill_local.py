"""The `wmill` client served locally.

Scripts call the real `wmill` package; its global client is replaced by a
`Windmill` whose HTTP transport dispatches, in process, to `LocalApi`: a small
implementation of the Windmill REST endpoints the client calls (variables,
resources, state, progress, job lookup, running a flow by path and reading its
result). The transport runs in the calling thread, so the job that is running on
that thread (set by the runner) gives the state path and job id that Windmill passes
to each job through WM_STATE_PATH / WM_JOB_ID.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import urllib.parse
import uuid
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import httpx
import wmill.client as wc

from . import triggers
from .config import Config

_local = threading.local()


@dataclass
class JobContext:
    config: Config
    job_id: str
    parent_job: str | None
    state_path: str
    lookup_job: Callable[[str], dict | None]
    progress: dict
    # starts a flow job from a `jobs/run/f/<path>` call (path, query string, headers, body), returns its id
    run_flow: Callable[[str, str, list, bytes], str] | None = None
    on_progress: Callable[[str, int], None] | None = None
    load_flow: Callable[[str], dict] | None = None  # a flow's OpenFlow document by path (flows/get)
    list_jobs: Callable[[dict], list] | None = None  # jobs/completed/list with its query


def current() -> JobContext | None:
    return getattr(_local, "job", None)


class running:
    """Context manager: `ctx` is the job running on this thread."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx

    def __enter__(self):
        self.prev = current()
        _local.job = self.ctx

    def __exit__(self, *exc):
        _local.job = self.prev


Answer = tuple[int, str, bytes]  # status, content type, body


class ApiRequest(NamedTuple):
    """One REST call: `path` percent-decoded, `query` as sent, `headers` as (lower-case
    name, value) pairs; what httpx.Request gives `handle` (url.path, url.query, ...)."""
    method: str
    path: str
    query: str
    headers: list
    content: bytes

    @classmethod
    def from_target(cls, method: str, target: str, headers: list, content: bytes) -> "ApiRequest":
        """From an HTTP request line's target (`/api/w/...?query`)."""
        path, _, query = target.partition("?")
        return cls(method, urllib.parse.unquote(path), query, headers, content)

    def params(self) -> dict:
        """The query's parameters, the first value of each (as dict(httpx's QueryParams))."""
        out: dict = {}
        for k, v in urllib.parse.parse_qsl(self.query, keep_blank_values=True):
            out.setdefault(k, v)
        return out


def _json(status: int, value: Any) -> Answer:
    return status, "application/json", json.dumps(value).encode()


_ROUTE = re.compile(r"^/api/w/(?P<ws>[^/]+)/(?P<rest>.+)$")


def handle(request: httpx.Request) -> httpx.Response:
    """One Windmill API call of the `wmill` client (its in-process transport)."""
    status, content_type, content = answer(ApiRequest(request.method, request.url.path, request.url.query.decode(),
                                                      list(request.headers.multi_items()), request.content))
    return httpx.Response(status, content=content, headers={"content-type": content_type})


def answer(request: ApiRequest) -> Answer:
    """One Windmill API call, answered from the current job's configuration."""
    ctx = current()
    if ctx is None:
        return _json(401, {"error": "wmill called outside a local runner job"})
    m = _ROUTE.match(request.path)
    if not m:
        return _json(404, {"error": f"not implemented locally: {request.path}"})
    rest, cfg = m["rest"], ctx.config
    body = None
    if request.content and not rest.startswith("jobs/run/"):  # a run's body is parsed as Windmill parses it
        body = json.loads(request.content)
    get = request.method == "GET"
    try:
        if get and rest.startswith("variables/get_value/"):
            return _json(200, cfg.get_variable(rest.removeprefix("variables/get_value/")))
        if get and rest.startswith("variables/exists/"):
            return _json(200, rest.removeprefix("variables/exists/") in cfg.variables)
        if get and rest.startswith("resources/exists/"):
            return _json(200, rest.removeprefix("resources/exists/") in cfg.resources)
        if get and rest.startswith("variables/get/"):
            path = rest.removeprefix("variables/get/")
            return _json(200, {"path": path, "value": cfg.get_variable(path), "is_secret": path in cfg.secret_paths})
        if not get and rest == "variables/create":
            # Windmill's CreateVariable: {path, value, is_secret, description}; an existing path is a 400
            if body["path"] in cfg.variables:
                return _json(400, {"error": f"variable {body['path']} already exists"})
            cfg.variables[body["path"]] = body["value"]
            if body.get("is_secret"):
                cfg.secret_paths.add(body["path"])
            return _json(201, body["path"])
        if not get and rest.startswith("variables/update/"):
            # EditVariable: {path?, value?, is_secret?, description?}
            path = rest.removeprefix("variables/update/")
            cfg.get_variable(path)  # 404 when absent, as Windmill
            if "value" in body:
                cfg.variables[path] = body["value"]
            if body.get("is_secret") is not None:
                (cfg.secret_paths.add if body["is_secret"] else cfg.secret_paths.discard)(path)
            return _json(200, "updated")
        if get and rest == "schedules/list":
            return _json(200, cfg.schedules)
        if get and rest.startswith("resources/get_value_interpolated/"):
            return _json(200, cfg.get_resource(rest.removeprefix("resources/get_value_interpolated/")))
        if get and rest.startswith("resources/get_value/"):
            return _json(200, cfg.get_resource(rest.removeprefix("resources/get_value/"), interpolated=False))
        if get and rest.startswith("resources/get/"):
            path = rest.removeprefix("resources/get/")
            return _json(200, {"path": path, "value": cfg.get_resource(path, interpolated=False)})
        if get and rest.startswith("resources/exists/"):  # windmill-client's setResource asks first
            return _json(200, rest.removeprefix("resources/exists/") in cfg.resources)
        if not get and rest == "resources/create":
            cfg.set_resource(body["path"], body["value"])
            return _json(201, body["path"])
        if not get and rest.startswith("resources/update_value/"):
            cfg.set_resource(rest.removeprefix("resources/update_value/"), body["value"])
            return _json(200, "updated")
        if not get and rest.startswith("jobs/run/f/") and ctx.run_flow:
            # Windmill queues the flow and answers its id at once; here it runs to its end
            # first, in this thread: a caller that waits for it sees the same outcome. The
            # call is a webhook call like any other (triggers.webhook_call): a flow with a
            # preprocessor runs it unless ?skip_preprocessor=true.
            job_id = ctx.run_flow(rest.removeprefix("jobs/run/f/"), request.query,
                                  list(request.headers), request.content)
            return 201, "text/plain", job_id.encode()
        if get and rest.startswith("flows/get/") and ctx.load_flow:
            path = rest.removeprefix("flows/get/")
            try:
                flow = ctx.load_flow(path)
            except Exception:  # noqa: BLE001 - no such flow: Windmill answers 404
                return _json(404, {"error": f"flow not found: {path}"})
            return _json(200, {"path": path, **flow})
        if get and rest == "jobs/completed/list" and ctx.list_jobs:
            return _json(200, ctx.list_jobs(request.params()))
        if get and rest.startswith("jobs_u/get/"):
            job = ctx.lookup_job(rest.removeprefix("jobs_u/get/"))
            return _json(200, job) if job else _json(404, {"error": "job not found"})
        if get and rest.startswith("jobs_u/completed/get_result"):
            maybe, _, job_id = rest.removeprefix("jobs_u/completed/get_result").partition("/")
            job = ctx.lookup_job(job_id)
            done = bool(job) and job["type"] == "CompletedJob"
            if maybe == "_maybe" and job:
                return _json(200, {"completed": done, "result": job.get("result"), "success": job.get("success"),
                                   "started": True})
            return _json(200, job["result"]) if done and not maybe else _json(404, {"error": "job not found"})
        if not get and rest.startswith("job_metrics/set_progress/"):
            job_id, percent = rest.removeprefix("job_metrics/set_progress/"), int(body["percent"])
            ctx.progress[job_id] = percent
            if ctx.on_progress:
                ctx.on_progress(job_id, percent)
            return _json(200, "ok")
        if get and rest.startswith("job_metrics/get_progress/"):
            return _json(200, ctx.progress.get(rest.removeprefix("job_metrics/get_progress/")))
    except KeyError as e:
        return _json(404, {"error": str(e.args[0])})
    except triggers.BadRequest as e:
        return 400, "text/plain", str(e).encode()
    return _json(404, {"error": f"not implemented locally: {request.method} {rest}"})


class LocalWindmill(wc.Windmill):
    """The real client, over an in-process transport, with per-thread job identity."""

    def __init__(self):
        super().__init__(base_url="http://windmill.local", token="local", workspace="local")

    def get_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, transport=httpx.MockTransport(handle))

    @property
    def workspace(self) -> str:
        ctx = current()
        return ctx.config.workspace if ctx else "local"

    @workspace.setter
    def workspace(self, _value) -> None:  # set by Windmill.__init__; the job's config decides
        pass

    @property
    def state_path(self) -> str:
        ctx = current()
        if ctx is None:
            raise Exception("State path not found")
        return ctx.state_path

    def set_progress(self, value: int, job_id: str | None = None):
        ctx = current()
        return super().set_progress(value, job_id or (ctx and ctx.job_id))

    def get_progress(self, job_id: str | None = None):
        ctx = current()
        return super().get_progress(job_id or (ctx and ctx.job_id))

    # The pinned client posts uploads with a bare httpx.post to {base_url}/w/{ws}/job_helpers/
    # upload_s3_file (wmill/client.py write_s3_file), outside this client's transport: the
    # workspace object storage is served here instead, with the same arguments and result.
    def write_s3_file(self, s3object, file_content, s3_resource_path=None, content_type=None,
                      content_disposition=None):
        key = (s3object or {}).get("s3") if isinstance(s3object, dict) else s3object
        key = key or f"wmill_uploads/{uuid.uuid4().hex}"
        if _s3_store():
            _s3_put(key, file_content, content_type)
            return {"s3": key, "storage": (s3object or {}).get("storage") if isinstance(s3object, dict) else None}
        path = _object_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            if isinstance(file_content, bytes):
                out.write(file_content)
            else:
                shutil.copyfileobj(file_content, out, 1 << 20)  # streamed, as the client streams it
        return {"s3": key, "storage": (s3object or {}).get("storage") if isinstance(s3object, dict) else None}

    def load_s3_file(self, s3object, s3_resource_path=None) -> bytes:
        key = s3object.get("s3") if isinstance(s3object, dict) else s3object
        if _s3_store():
            bucket, prefix = _s3_store()
            return _s3_client().get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        return _object_path(key).read_bytes()


def _s3_store() -> tuple[str, str] | None:
    """DODO_OBJECT_STORE=s3://bucket[/prefix]: the object storage is a real S3 API (as the
    workspace's is in Windmill), reached with boto3's own settings (AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)."""
    url = os.environ.get("DODO_OBJECT_STORE") or ""
    if not url.startswith("s3://"):
        return None
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"DODO_OBJECT_STORE={url!r} names no bucket: set it to s3://BUCKET[/PREFIX]")
    return bucket, (prefix.strip("/") + "/" if prefix.strip("/") else "")


def _s3_client():
    import boto3  # noqa: PLC0415 - only the s3:// mode pays for it

    return boto3.client("s3")


def _s3_put(key: str, file_content, content_type: str | None) -> None:
    """Streamed like the directory mode: upload_fileobj sends parts, never the whole file."""
    bucket, prefix = _s3_store()
    body = io.BytesIO(file_content) if isinstance(file_content, bytes) else file_content
    extra = {"ContentType": content_type} if content_type else None
    _s3_client().upload_fileobj(body, bucket, prefix + key, ExtraArgs=extra)


def object_store() -> Path:
    """The workspace object storage stand-in: a directory (DODO_OBJECT_STORE, default
    var/object_store), one file per key; or an S3 bucket when it is s3://BUCKET[/PREFIX]."""
    return Path(os.environ.get("DODO_OBJECT_STORE") or os.path.join("var", "object_store"))


def _object_path(key: str) -> Path:
    parts = [p for p in str(key).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"invalid object key {key!r}")
    return object_store().joinpath(*parts)


_install_lock = threading.Lock()


def install() -> None:
    """Make `wmill.*` functions use the local API (idempotent)."""
    with _install_lock:
        if not isinstance(wc._client, LocalWindmill):
            wc._client = LocalWindmill()
