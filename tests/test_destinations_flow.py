"""The per-event destinations through the entry flow: inside the CRM step, at no extra job."""

import json

import pytest
from werkzeug import Response

from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from tests.fixture_data import FIXTURE_SECRET, resign
from tests.standin_checks import posthog_capture, segment_call
from tests.test_flows_e2e import ENTRY, HOT_PATH, trigger_event


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


def test_configured_destinations_ride_in_the_crm_step_at_no_extra_job(db, outbox, sleeps, httpserver):
    captured, tracked = [], []

    def posthog(request):
        captured.append(posthog_capture(request, "phc_flow"))
        return Response(json.dumps({"status": "Ok"}), 200, content_type="application/json")

    def segment(request):
        tracked.append(segment_call(request, "wk_flow"))
        return Response(json.dumps({"success": True}), 200, content_type="application/json")

    httpserver.expect_request("/i/v0/e/", method="POST").respond_with_handler(posthog)
    for path in ("/v1/identify", "/v1/track"):
        httpserver.expect_request(path, method="POST").respond_with_handler(segment)
    cfg = bundle_config(db.url, FIXTURE_SECRET, env={"POSTHOG_API_KEY": "phc_flow", "POSTHOG_HOST": httpserver.url_for(""),
                                                   "SEGMENT_WRITE_KEY": "wk_flow",
                                                   "SEGMENT_API_URL": httpserver.url_for("")})
    quiet_wmill_client()
    runner = Runner(ROOT, cfg, sleep=sleeps.append, random=lambda: 0.5)
    delivery = resign("payment.succeeded")
    run = runner.run_flow(ENTRY, event=trigger_event(delivery))
    assert run.success and run.job_count == HOT_PATH
    assert [(b["event"], b["properties"]["revenue"]) for b in captured] == [("payment.succeeded", "29.99")]
    assert [c for c, _ in tracked] == ["identify", "track"]
    assert tracked[1][1]["messageId"] == delivery["headers"]["webhook-id"]
    again = runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded")))  # a redelivery
    assert again.success and len(captured) == 1 and len(tracked) == 2
