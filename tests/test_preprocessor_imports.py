"""What the entry flow's preprocessor imports, in a fresh interpreter as its Windmill job is,
after the wrapper's own imports: every delivery pays it, forged ones included, and a forged
one is the whole of its event's Python CPU (the failure module is skipped for it).
docs/internals.md, "What each hot-path step imports"."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from werkzeug import Response

from tests.fixture_data import FIXTURE_SECRET, envelope, sign

from f.dodo.lib.inert import JOINER

ROOT = Path(__file__).resolve().parent.parent
# Not needed to verify a delivery, each measured at 0.2x-2.5x a bare interpreter start or more
# (urllib.request, http.client and email through urllib; typing; uuid; the SDK's datetime)
HEAVY = ("urllib.request", "urllib.parse", "http.client", "email", "ssl", "typing", "uuid", "datetime",
         "standardwebhooks", "wmill", "httpx", "psycopg2", "pydantic")

_JOB = """
import os, json, traceback, sys, re  # what Windmill's wrapper has imported already
before = set(sys.modules)
from f.dodo.webhook__flow.preprocessor import preprocessor
try:
    out = {"result": preprocessor(json.loads(sys.argv[1]))}
except Exception as exc:
    out = {"error": type(exc).__name__, "extra": vars(exc)}
new = set(sys.modules) - before
out["heavy"] = sorted(m for m in new if any(m == h or m.startswith(h + ".") for h in %r))
out["inert"] = "f.dodo.lib.inert" in new
print(json.dumps(out))
""" % (HEAVY,)


def _event(secret: str = FIXTURE_SECRET) -> dict:
    body = envelope("payment.succeeded")
    body["data"]["customer"]["name"] = "$var:f/dodo/webhook_secret"
    raw = json.dumps(body)
    headers = sign(raw, secret, "msg_imports")  # signed now
    return {"kind": "webhook", "body": json.loads(raw), "raw_string": raw, "query": {},
            "headers": {k.replace("-", "_"): v for k, v in headers.items()}}


@pytest.fixture
def job(httpserver):
    def value(name):
        def answer(request):
            assert request.headers.get("Authorization") == "Bearer job-token"
            return Response(json.dumps(FIXTURE_SECRET), content_type="application/json") \
                if name == "webhook_secret" else Response("not found", status=404)
        return answer

    for name in ("webhook_secret", "webhook_secret_previous", "webhook_tolerance_s"):
        httpserver.expect_request(f"/api/w/ws/variables/get_value/f/dodo/{name}", method="GET").respond_with_handler(
            value(name))

    def run(event: dict) -> dict:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WM_WORKSPACE": "ws", "WM_TOKEN": "job-token",
               "BASE_INTERNAL_URL": httpserver.url_for("").rstrip("/")}
        out = subprocess.run([sys.executable, "-c", _JOB, json.dumps(event)], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    return run, httpserver


def test_a_forged_delivery_imports_only_what_verification_needs(job):
    run, _ = job
    got = run(_event("whsec_" + "b3RoZXItc2VjcmV0LW5vdC1kb2RvcyE="))
    assert got["error"] == "SignatureMismatchError" and got["extra"]["rejected"] is True
    assert got["heavy"] == [] and got["inert"] is False


# A verified delivery is normalised here (the pydantic models) for the record step's one SQL
# statement: it pays the models, never the database driver or an HTTP client.
GENUINE_ONLY = ("pydantic", "typing", "datetime", "urllib.parse", "uuid")  # the last two: pydantic imports them


def test_a_genuine_delivery_is_normalised_defused_and_imports_no_driver(job):
    run, server = job
    server.expect_request("/api/w/ws/flows/get/f/dodo/custom", method="GET").respond_with_json(
        {"path": "f/dodo/custom", "value": {"modules": []}})
    for kind in ("resources", "variables"):
        server.expect_request(re.compile(rf"^/api/w/ws/{kind}/exists/f/dodo/[a-z_]+$"),
                              method="GET").respond_with_json(False)
    got = run(_event())
    result = got["result"]
    assert result["event"]["data"]["customer"]["name"] == JOINER + "$var:f/dodo/webhook_secret"
    assert result["webhook_id"] == "msg_imports" and re.fullmatch(r"[0-9a-f]{32}", result["delivery_attempt"])
    assert result["normalized"]["amount"] == "29.99" and result["normalized"]["webhook_id"] == "msg_imports"
    call = result["record"]  # record_delivery(jsonb)'s argument, defused like the rest
    assert call["webhook_id"] == "msg_imports" and call["attempt"] == result["delivery_attempt"]
    assert call["table"] == "payments" and call["row"]["total_minor"] == 2999
    assert call["payload"]["data"]["customer"]["name"] == JOINER + "$var:f/dodo/webhook_secret"
    assert result["normalized"]["data"]["customer"]["name"] == JOINER + "$var:f/dodo/webhook_secret"
    assert [m for m in got["heavy"] if not m.startswith(GENUINE_ONLY)] == [] and got["inert"] is True
    assert "psycopg2" not in got["heavy"] and any(m.startswith("pydantic") for m in got["heavy"])
