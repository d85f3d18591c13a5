"""The few Windmill REST calls the hot path makes, with the standard library only.

The `wmill` client imports httpx (and its dependencies): about as much import time as the
rest of the preprocessor, paid by every delivery, forged ones included, to fetch one
variable. These calls read what a Windmill worker gives each job, exactly as the
client does (wmill 1.850.0 `Windmill.__init__`, `get_variable`): the API at
BASE_INTERNAL_URL (else WM_BASE_URL) + `/api`, the job's WM_TOKEN as a Bearer token,
WM_WORKSPACE. Errors name the path and the status, never a value.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 30


class WindmillApiError(Exception):
    """A Windmill API call failed (`status` is None when the API was not reached)."""

    def __init__(self, what: str, status: int | None):
        super().__init__(f"Windmill API: {what}: {'unreachable' if status is None else f'HTTP {status}'}")
        self.status = status


def _request(method: str, rest: str, params: dict | None = None, body: Any = None, *, text: bool = False) -> Any:
    base = os.environ.get("BASE_INTERNAL_URL") or os.environ.get("WM_BASE_URL")
    workspace, token = os.environ.get("WM_WORKSPACE"), os.environ.get("WM_TOKEN")
    if not (base and workspace and token):
        raise WindmillApiError(rest, None)
    url = f"{base.rstrip('/')}/api/w/{workspace}/{urllib.parse.quote(rest)}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise WindmillApiError(rest, exc.code) from None
    except (urllib.error.URLError, OSError):
        raise WindmillApiError(rest, None) from None
    try:
        return payload.decode() if text else json.loads(payload)
    except ValueError:
        raise WindmillApiError(f"{rest} (not JSON)", None) from None


def _get(rest: str, params: dict | None = None) -> Any:
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


def optional_resource(path: str) -> Any:
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
