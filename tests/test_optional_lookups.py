"""Optional integrations are looked up through Windmill's API, and only a 404 means
"not configured": an API failure must fail the job (it is retried), never quietly turn
a configured sink into a skipped one (heal.py, alert_failure, mysql_mirror)."""
from __future__ import annotations

import re

import pytest
from werkzeug import Response

from f.dodo.lib import heal
from f.dodo.lib.windmill_api import WindmillApiError

TOKEN = "job-token"


@pytest.fixture
def windmill(httpserver, monkeypatch):
    monkeypatch.setenv("WM_BASE_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("WM_WORKSPACE", "ws")
    monkeypatch.setenv("WM_TOKEN", TOKEN)
    monkeypatch.delenv("BASE_INTERNAL_URL", raising=False)
    return httpserver


def answer(windmill, resource_status: int):
    def handler(request):
        assert request.method == "GET" and request.headers["Authorization"] == f"Bearer {TOKEN}"
        if "/resources/get_value_interpolated/" in request.path:
            return Response("boom" if resource_status >= 500 else "not found", status=resource_status)
        return Response("not found", status=404)  # variables: absent
    windmill.expect_request(re.compile(r"^/api/w/ws/.*")).respond_with_handler(handler)


def test_absent_destinations_are_none(windmill):
    answer(windmill, 404)
    assert set(heal.workspace_destinations().values()) == {None}


def test_a_windmill_api_failure_is_not_read_as_not_configured(windmill):
    answer(windmill, 500)
    with pytest.raises(WindmillApiError, match="HTTP 500"):
        heal.workspace_destinations()
    with pytest.raises(WindmillApiError, match="HTTP 500"):
        heal.workspace_sinks()
