"""Attack and bad input through the real local server and the real flows (issue 7, item 2).

Every case of tests/attack_cases.py goes to the webhook URL and to the HTTP route:
it must end as expected (rejected with a 4xx, rejected by the preprocessor, recorded
failed for replay, or stored inertly), change no row of any other delivery (a rejected
one changes none at all), leave every worker alive and the server serving a normal
delivery, and no secret may appear in any response, job result, log, row or outbox
entry: neither a configured secret nor any job's token, though the injections name them
in every header, the query and a route parameter.
"""
import json
import re
import time

import pytest
from attack_cases import (CASES, JOB_TOKEN_PREFIX, SCHEMA, TEST_BODY_LIMIT, Harness, changed_rows, drop_pg_schema,
                          foreign_changes, leaked_secrets, redact, start_pg_schema, stored_text, valid, _signed)

from f.dodo.lib.inert import defuse
from local_runner.server import DEFAULT_BODY_LIMIT

JOINER = "\u2060"  # WORD JOINER, written out: never taken from the code under test


@pytest.fixture(scope="module")
def harness(pg_url, tmp_path_factory):
    drop_pg_schema(pg_url)  # the flows use the scripts' default schema: start it empty
    start_pg_schema(pg_url)
    h = Harness(pg_url, str(tmp_path_factory.mktemp("attack") / "outbox.jsonl"))
    yield h
    h.close()
    drop_pg_schema(pg_url)


@pytest.mark.parametrize("case, target", [(c, t) for c in CASES for t in c.targets],
                         ids=[f"{c.name}-{t}" for c in CASES for t in c.targets])
def test_attack_case(harness, case, target, capfd):
    before = harness.snapshot()
    got, req = harness.send(case, target)
    after = harness.snapshot()
    out, err = capfd.readouterr()
    harness.logs += [out, err]
    assert got.outcome == case.expect, redact(f"{got.outcome} {got.status}: {got.detail}")
    if got.outcome == "rejected_http":
        assert 400 <= got.status < 500 and got.detail.strip(), "a 4xx with a reason"
    if got.outcome == "recorded_failed":  # only its own inbox row, its body defused, and its one alert
        changed = changed_rows(before, after)
        assert set(changed) == {"webhook_events", "delivery_ledger"}
        assert all(row.startswith(f'(alert:{req.ids["msg"]},') for row in changed["delivery_ledger"]), changed["delivery_ledger"]
        payload = harness.conn.execute("SELECT payload FROM webhook_events WHERE webhook_id = %s",
                                       (req.ids["msg"],)).fetchone()[0]
        assert payload["data"]["payment_id"] == req.ids["pay"]
    elif got.outcome != "stored":
        assert changed_rows(before, after) == {}
    else:
        assert got.inbox in ("processed", "ignored", "failed", "duplicate")
    assert foreign_changes(before, after, list(req.ids.values())) == {}
    if case.stored_as:
        assert harness.stored_values(case, req) == case.stored_as
    assert harness.workers_alive()
    assert harness.canary(target), "a normal delivery after the attack went through"


def test_a_replayed_delivery_is_a_duplicate_that_changes_nothing(harness):
    first = valid("replay")
    status, _, job = harness.deliver(first, "route")
    assert status == 201 and job["success"]
    before = harness.snapshot()
    again = _signed(first.body.decode(), first.ids, ts=int(time.time()) + 1)  # Dodo's retry: new timestamp
    status, _, job = harness.deliver(again, "webhook")
    assert status == 201 and job["success"] and job["result"]["status"] == "duplicate"
    after = harness.snapshot()
    # the inbox counts the delivery (attempts 1 -> 2); nothing else changes
    assert set(changed_rows(before, after)) == {"webhook_events"}
    attempts = harness.conn.execute(f'SELECT attempts FROM "{SCHEMA}".webhook_events WHERE webhook_id = %s',
                                    [first.ids["msg"]]).fetchone()[0]
    assert job["result"]["attempts"] == attempts == 2
    before.pop("webhook_events"), after.pop("webhook_events")
    assert changed_rows(before, after) == {}


def test_injected_text_reaches_slack_and_hubspot_inert(harness):
    for case in CASES:  # again here, so this test stands alone
        if case.name.startswith(("inject_html", "inject_slack", "inject_crlf", "inject_nul")):
            harness.send(case, "webhook")
    records = [json.loads(line) for line in open(harness.outbox, encoding="utf-8")]
    attacked = [r for r in records if "_atk_" in r.get("delivery", "") and "canary" not in r["delivery"]]
    slack = [r for r in attacked if r["kind"] == "slack"]
    hubspot = [r for r in attacked if r["kind"] == "hubspot"]
    assert slack and hubspot
    for r in slack:
        # the fallback text as sent, and each block text unescaped from its JSON (an alert's text
        # holds quotes: the replay command's ["msg_..."])
        texts = [r["text"]] + [json.loads(f'"{t}"') for t in
                               re.findall(r'"text": "((?:[^"\\]|\\.)*)"', json.dumps(r["blocks"]))]
        for t in texts:
            assert "<" not in t, t  # no link, mention or <!channel> control sequence survives
            assert not re.search(r"(?<!\u2060)@(here|channel|everyone)\b", t), t
            assert "\r" not in t and "\x00" not in t
    for r in hubspot:
        note = r["note"]["hs_note_body"]
        assert "<script" not in note and "<img" not in note  # CR/LF inside HTML is inert text
        assert "whsec_" not in json.dumps(r)


def test_delivery_text_is_defused_against_windmill_interpolation():
    event = {"$interpolate": ["a", {"$var": "f/x"}], "name": "$var:f/dodo/webhook_secret",
             "list": ["$res:f/dodo/postgres", "$WM_TOKEN", "price $5"], "n": 1, "none": None}
    assert defuse(event) == {
        JOINER + "$interpolate": ["a", {JOINER + "$var": "f/x"}], "name": JOINER + "$var:f/dodo/webhook_secret",
        "list": [JOINER + "$res:f/dodo/postgres", JOINER + "$WM_TOKEN", "price $5"], "n": 1, "none": None}
    assert stored_text("$var:x") == JOINER + "$var:x" and stored_text("a\x00b") == "a\ufffdb"


def test_body_limit_follows_windmill():
    assert DEFAULT_BODY_LIMIT == 200 * 1024 * 1024 and TEST_BODY_LIMIT < DEFAULT_BODY_LIMIT


def test_no_secret_in_any_response_job_log_row_or_outbox(harness, capfd, caplog):
    # runs last: everything the module's cases produced, plus cases of its own
    for name in ("resigned_with_another_secret", "inject_windmill_var_payment", "inject_windmill_res_payment",
                 "resolve_webhook_secret_in_webhook-timestamp", "resolve_secret_variable_in_webhook-signature",
                 "resolve_job_token_in_webhook-id", "resolve_resource_in_query"):
        for target in ("webhook", "route"):
            harness.send(next(c for c in CASES if c.name == name), target)
    out, err = capfd.readouterr()
    said = harness.everything_said() + out + err + caplog.text
    assert len(said) > 10_000 and len(harness.job_results) > 10  # the scan saw the runs' job results
    leaked = leaked_secrets(said)  # a piece of one counts: an error may quote a cut header
    assert leaked == [], f"secret material #{leaked} found"
    assert JOB_TOKEN_PREFIX not in said, "a job token found"


@pytest.mark.parametrize("name", ["nested_600_levels", "nested_200_levels_in_metadata"])
def test_a_deep_delivery_fails_in_the_preprocessor_with_the_documented_error(harness, name):
    got, _ = harness.send(next(c for c in CASES if c.name == name), "webhook")
    assert got.outcome == "rejected_preprocessor"
    assert got.detail.startswith('{"error": {"name": "InvalidBodyError", "message": "body: nested too deeply", ')
