"""The few Windmill REST calls the bundle makes, with the standard library only.

The preprocessor calls this on every delivery, forged ones included, in a fresh process,
so what it imports is chosen by measurement (docs/internals.md, "What each hot-path step
imports"): the `wmill` client imports httpx (about as much import CPU as the rest of the
preprocessor), and `urllib.request` or `http.client` import `email`, `ssl` and more (~2x a
bare interpreter start) for what is one short HTTP/1.1 exchange with the worker's own
API server. So a request here is one exchange of f/dodo/lib/http_wire.py (the socket
layer the sinks' client shares): `Connection: close`, a Content-Length or chunked answer
read to its end, `ssl` imported only for an https base URL (verified against the system's
CAs, as urllib's default). No proxy is used: BASE_INTERNAL_URL is the Windmill server the
worker itself talks to. Not the sinks' httpx-shaped client (f/dodo/lib/http_client.py)
itself: its import (typing, urllib.parse, its classes) measured +0.57x a bare start on the
forged path, which has 5x in all; http_wire imports `socket` only.

These calls read what a Windmill worker gives each job, exactly as the client does
(wmill 1.850.0 `Windmill.__init__`, `get_variable`): the API at BASE_INTERNAL_URL (else
WM_BASE_URL) + `/api`, the job's WM_TOKEN as a Bearer token, WM_WORKSPACE. Errors name
the path and the status, never a value.
"""
from __future__ import annotations

import json
import os

from f.dodo.lib import http_wire as wire

TIMEOUT_S = 30
# The characters urllib.parse.quote leaves as they are (safe="/"): a path made of them only
# needs no quoting, so the hot path does not import urllib.parse (~0.2x a bare start, with ipaddress)
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-~/")


class WindmillApiError(Exception):
    """A Windmill API call failed (`status` is None when the API was not reached)."""

    def __init__(self, what: str, status: int | None):
        super().__init__(f"Windmill API: {what}: {'unreachable' if status is None else f'HTTP {status}'}")
        self.status = status


def _request(method: str, rest: str, params: dict | None = None, body: object = None, *, text: bool = False) -> object:
    base = os.environ.get("BASE_INTERNAL_URL") or os.environ.get("WM_BASE_URL")
    workspace, token = os.environ.get("WM_WORKSPACE"), os.environ.get("WM_TOKEN")
    if not (base and workspace and token):
        raise WindmillApiError(rest, None)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    try:
        status, payload = _exchange(method, base, f"/api/w/{_quote(workspace)}/{_quote(rest)}{_query(params)}",
                                    headers, data)
    except (wire.WireError, ValueError):  # refused, reset, timed out, TLS, not an HTTP answer, a bad base URL
        raise WindmillApiError(rest, None) from None
    if not 200 <= status < 300:
        raise WindmillApiError(rest, status)
    try:
        return payload.decode() if text else json.loads(payload)
    except ValueError:
        raise WindmillApiError(f"{rest} (not JSON)", None) from None


def _quote(text: str) -> str:
    if set(text) <= _PLAIN:
        return text
    from urllib.parse import quote  # noqa: PLC0415 - a path with other characters (never the hot path's)

    return quote(text)


def _query(params: dict | None) -> str:
    if not params:
        return ""
    from urllib.parse import urlencode  # noqa: PLC0415 - job lists and skip_preprocessor only

    return "?" + urlencode(params)


def _exchange(method: str, base: str, target: str, headers: dict, data: bytes | None) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a new connection to `base` + `target`: (status, body)."""
    https, host, port, authority, path = wire.split_url(base)  # e.g. http://windmill_server:8000, https://wm.example.com/prefix
    base_path = path.split("?", 1)[0].strip("/")
    prefix = "/" + base_path if base_path else ""
    head = {"Host": authority, "Connection": "close", "Accept-Encoding": "identity", **headers}
    status, _, _, body = wire.exchange(method, host, port, prefix + target, head, data, timeout=TIMEOUT_S,
                                       tls=wire.tls_context() if https else None)
    return status, body


def _get(rest: str, params: dict | None = None) -> object:
    return _request("GET", rest, params)


def get_variable(path: str) -> str:
    """The variable's value (GET variables/get_value/{path})."""
    return _get(f"variables/get_value/{path}")


def optional_variable(path: str) -> str | None:
    """The variable's value, or None when it does not exist (404)."""
    try:
        return get_variable(path)
    except WindmillApiError as exc:
        if exc.status == 404:
            return None
        raise


def optional_resource(path: str) -> object:
    """The resource's value, its own `$var:`/`$res:` resolved, or None when it does not
    exist (as wmill's get_resource(path, none_if_undefined=True):
    resources/get_value_interpolated/{path})."""
    try:
        return _get(f"resources/get_value_interpolated/{path}")
    except WindmillApiError as exc:
        if exc.status in (400, 404):
            return None
        raise


def get_flow(path: str) -> dict:
    """The flow's OpenFlow document (GET flows/get/{path})."""
    return _get(f"flows/get/{path}")


def set_secret_variable(path: str, value: str) -> None:
    """Create the secret variable, or update its value (as wmill's set_variable does:
    variables/create when GET variables/get/{path} answers 404, else variables/update)."""
    if variable_exists(path):
        _request("POST", f"variables/update/{path}", None, {"value": value}, text=True)
    else:
        _request("POST", "variables/create", None,
                 {"path": path, "value": value, "is_secret": True, "description": ""}, text=True)


def variable_exists(path: str) -> bool:
    """Whether the variable exists, its value never read (GET variables/exists/{path})."""
    return bool(_get(f"variables/exists/{path}"))


def resource_exists(path: str) -> bool:
    """Whether the resource exists, its value never read (GET resources/exists/{path})."""
    return bool(_get(f"resources/exists/{path}"))


def run_flow_async(path: str, args: dict, *, skip_preprocessor: bool = False) -> str:
    """Start a flow by path; its job id (POST jobs/run/f/{path}). Windmill runs a flow's
    preprocessor for such a call unless the query says skip_preprocessor=true
    (windmill-api-jobs execution.rs `run_flow`); the pinned wmill client's
    run_flow_async cannot say it."""
    params = {"skip_preprocessor": "true"} if skip_preprocessor else None
    return _request("POST", f"jobs/run/f/{path}", params, args, text=True).strip()


def get_job(job_id: str) -> dict:
    """The job, queued or completed, with its args (GET jobs_u/get/{id})."""
    return _get(f"jobs_u/get/{job_id}")


def list_completed_jobs(**params: str) -> list[dict]:
    """GET jobs/completed/list with its filters (script_path_exact, success, include_args, ...)."""
    return _get("jobs/completed/list", params)


def set_progress(percent: int) -> None:
    """The running job's progress, 0..99 (POST job_metrics/set_progress/{WM_JOB_ID})."""
    _request("POST", f"job_metrics/set_progress/{os.environ.get('WM_JOB_ID', '')}", None, {"percent": percent})
