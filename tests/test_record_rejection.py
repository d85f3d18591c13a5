"""The record steps do not retry a payload the store rejected, and still retry the rest.

A refund delivery without its payment_id passes the normaliser (the refund's own id is
there) but the store needs the payment: the preprocessor passes no record call, so the
SQL record step is skipped and the Python step normalize_record (f/dodo/store_event)
records the event in the inbox as failed and raises EventRejected, which is permanent
(errors.RETRY_IF: `error.extra.permanent`). A value only the database rejects (an amount
beyond bigint) fails the SQL record step with "EventRejected: ..." (migration v050),
also not retried. Either way the failure module marks the inbox row failed with the
error and the step. A transient failure (the database unreachable) is retried with the
step's exponential backoff as before.
"""
import json
import socket

import pytest
from fixture_data import FIXTURE_SECRET, envelope, load_delivery, sign

from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from test_flows_e2e import inbox, trigger_event

ENTRY = "f/dodo/webhook"


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


def refund_without_payment_id() -> tuple[dict, str]:
    """A signed refund.succeeded delivery whose data has no payment_id, and its webhook-id."""
    event = envelope("refund.succeeded")
    del event["data"]["payment_id"]
    body = json.dumps(event)
    msg_id = load_delivery("refund.succeeded")["headers"]["webhook-id"] + "_nopay"
    return {"body": body, "headers": sign(body, FIXTURE_SECRET, msg_id)}, msg_id


def record_jobs(run, step: str = "record") -> list:
    return [j for j in run.jobs if j.step_id == step]


def test_a_rejected_payload_is_recorded_once_and_marked_failed(db, outbox):
    quiet_wmill_client()
    sleeps = []
    runner = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET), sleep=sleeps.append, random=lambda: 0.5)
    delivery, msg_id = refund_without_payment_id()
    run = runner.run_flow(ENTRY, event=trigger_event(delivery))
    assert not run.success
    [skipped] = record_jobs(run)  # no record call from the preprocessor: the SQL step is skipped
    assert skipped.kind == "identity"
    [record] = record_jobs(run, "normalize_record")  # one attempt: no retry of a deterministic rejection
    assert record.result["error"]["name"] == "EventRejected"
    assert "data.payment_id" in record.result["error"]["message"]
    assert sleeps == []
    [failure] = [j for j in run.jobs if j.kind == "failure"]
    assert failure.success and failure.result["status"] == "failed"
    row = inbox(db, msg_id)
    assert row["status"] == "failed" and row["failed_step"] == "normalize_record"
    assert row["last_error"].startswith("EventRejected: ") and "data.payment_id: missing" in row["last_error"]
    assert db.conn.execute("SELECT count(*) FROM refunds").fetchone()[0] == 0


def test_a_value_the_database_rejects_fails_the_sql_record_step_once_and_is_marked_failed(db, outbox):
    quiet_wmill_client()
    sleeps = []
    runner = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET), sleep=sleeps.append, random=lambda: 0.5)
    event = envelope("payment.succeeded")
    event["data"]["total_amount"] = 2**63  # beyond bigint: the normaliser keeps it, the column refuses it
    body = json.dumps(event)
    run = runner.run_flow(ENTRY, event=trigger_event({"body": body, "headers": sign(body, FIXTURE_SECRET, "msg_big")}))
    assert not run.success and sleeps == []
    [record] = record_jobs(run)
    assert "EventRejected: " in record.result["error"]["message"] and "bigint" in record.result["error"]["message"]
    row = inbox(db, "msg_big")
    assert row["status"] == "failed" and row["failed_step"] == "record" and "EventRejected: " in row["last_error"]
    assert db.conn.execute("SELECT count(*) FROM payments").fetchone()[0] == 0


def test_the_record_flow_does_not_retry_it_either(db, outbox):
    quiet_wmill_client()
    sleeps = []
    runner = Runner(ROOT, bundle_config(db.url, FIXTURE_SECRET), sleep=sleeps.append, random=lambda: 0.5)
    delivery, msg_id = refund_without_payment_id()
    run = runner.run_flow("f/dodo/record", {"event": json.loads(delivery["body"]), "webhook_id": msg_id})
    assert not run.success and len(record_jobs(run)) == 1 and sleeps == []  # the sink flow's own record step
    assert inbox(db, msg_id)["failed_step"] == "record"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_database_is_still_retried(db, outbox):
    """The first attempt finds no database (connection refused); it is back for the retry."""
    quiet_wmill_client()
    cfg = bundle_config(db.url, FIXTURE_SECRET)
    reachable = cfg.resources["f/dodo/postgres"]
    cfg.resources["f/dodo/postgres"] = dict(reachable, port=closed_port())
    sleeps = []

    def sleep(seconds):  # the backoff passes, the database comes back
        sleeps.append(seconds)
        cfg.resources["f/dodo/postgres"] = reachable

    runner = Runner(ROOT, cfg, sleep=sleep, random=lambda: 0.5)
    name = "payment.succeeded"
    run = runner.run_flow(ENTRY, event=trigger_event({"body": load_delivery(name)["body"],
                                                      "headers": sign(load_delivery(name)["body"], FIXTURE_SECRET,
                                                                      "msg_db_down")}))
    assert run.success, run.result
    first, second = record_jobs(run)
    assert first.result["error"]["name"] == "Anyhow" and "error connecting to server" in first.result["error"]["message"]
    assert second.success and second.result["status"] == "recorded"
    assert sleeps == [2.0]  # exponential: 1 * 2^1 (jitter centred at 0.5)
    assert inbox(db, "msg_db_down")["status"] == "processed"
