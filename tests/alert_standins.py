"""The Slack stand-in the failure-alert tests share (test_alerting, test_error_handler):
every chat.postMessage checked against Slack's documented shape and kept in order."""
import json

import pytest
from werkzeug.wrappers import Request, Response

from tests.standin_checks import slack_post_message

TOKEN = "xoxb-alerts"


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


@pytest.fixture
def slack(httpserver, monkeypatch):
    posted = []

    def handle(request: Request) -> Response:
        posted.append(slack_post_message(request, TOKEN))
        return Response(json.dumps({"ok": True, "ts": f"17.{len(posted)}"}), content_type="application/json")

    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(handle)
    monkeypatch.setenv("DODO_SLACK_API_URL", httpserver.url_for("/api"))
    return posted
