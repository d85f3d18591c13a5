"""Calls Windmill's REST API the way the bundle's light client does: urllib, the job's
BASE_INTERNAL_URL (or WM_BASE_URL), WM_TOKEN and WM_WORKSPACE."""
import json
import os
import time
import urllib.error
import urllib.request


def _call(method: str, rest: str, body: bytes | None = None):
    base = os.environ.get("BASE_INTERNAL_URL") or os.environ["WM_BASE_URL"]
    request = urllib.request.Request(f"{base}/api/w/{os.environ['WM_WORKSPACE']}/{rest}", data=body, method=method,
                                     headers={"Authorization": f"Bearer {os.environ['WM_TOKEN']}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main(path: str = "", args: dict | None = None, query: str = "", variable: str = ""):
    if variable:
        return dict(zip(("status", "text"), _call("GET", f"variables/get_value/{variable}")))
    status, job_id = _call("POST", f"jobs/run/f/{path}?{query}", json.dumps(args or {}).encode())
    if status != 201:
        return {"status": status, "text": job_id}
    while True:
        status, text = _call("GET", f"jobs_u/get/{job_id}")
        job = json.loads(text)
        if job["type"] == "CompletedJob":
            return {"status": 201, "success": job["success"], "result": job["result"], "args": job["args"]}
        time.sleep(0.05)
