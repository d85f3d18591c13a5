"""The record step is idempotent per delivery attempt (one flow run), not per call.

A worker that dies after the record step committed but before its completion was saved
leaves a zombie job: Windmill re-queues that same job, same id and same arguments
(monitor.rs, RESTART_ZOMBIE_JOBS), and the flow resumes at it. A connection dropped
after the commit but before its answer fails the step, whose retry evaluates the same
input transforms over the same flow inputs. Either way the step records again within
the same run; its first commit is not a duplicate: it answers "recorded" (rerun) and
the sinks run once each. A redelivery is a new run with a new `delivery_attempt` (made
by the preprocessor) and stays a duplicate. UI runs carry no key: a duplicate per
webhook_id, as before.

The faults are injected as bench/soak.py's KillSwitch does: the record step (the SQL
one, through the runner's PostgreSQL executor `pg_script.run`, for trigger runs; the
Python one, f/dodo/store_event's `main`, for UI runs) is wrapped, runs to its commit,
and the step then runs again with the same arguments. The SQL step's key is the
`attempt` inside its call, which the preprocessor made (`delivery_attempt`).
"""
import functools
import time
import json
from collections import Counter

import pytest
import yaml
from fixture_data import FIXTURE_SECRET, envelope, resign, sign

from f.dodo.lib import db as dblib
from f.dodo import store_event
from local_runner import pg_script
from local_runner.demo import ROOT
from test_flows_e2e import steps, trigger_event, webhook_id

ENTRY = "f/dodo/webhook"
SINKS = ["crm", "notify"]


@pytest.fixture
def schema_name():
    return "dodo"  # the flows use the scripts' default schema


class RecordFault:
    """Wraps the record step: the next call commits, then its worker is killed (`kill`: the
    same job restarts with the same arguments) or its commit's answer is lost (`drop`: the
    step fails with a connection error and is retried). `results` holds what every call of
    the record step returned, in order."""

    def __init__(self, monkeypatch):
        self.results: list = []
        self.armed: str | None = None
        real_sql, real_main = pg_script.run, store_event.main

        def run(code, args, resources):
            if "record_delivery" not in code:
                return real_sql(code, args, resources)
            lost = pg_script.SqlJobFailed(  # what the worker reports for a connection gone mid-query
                "Anyhow", "Error: connection closed: server closed the connection unexpectedly @pg_executor.rs")
            return self._call(lambda: real_sql(code, args, resources), lost)

        @functools.wraps(real_main)  # the runner passes arguments by main's signature
        def main(**kwargs):
            return self._call(lambda: real_main(**kwargs),
                              dblib.OperationalError("server closed the connection unexpectedly"))

        monkeypatch.setattr(pg_script, "run", run)
        monkeypatch.setattr(store_event, "main", main)

    def _call(self, real, lost: Exception):
        fault, self.armed = self.armed, None
        if fault:
            self.results.append(real())  # committed
            if fault == "drop":
                raise lost
            # "kill": the worker is gone; Windmill runs the zombie job again, same arguments
        self.results.append(real())
        return self.results[-1]


@pytest.fixture
def fault(monkeypatch):
    return RecordFault(monkeypatch)


def delivery(name: str, wid: str) -> dict:
    """The fixture delivery `name` signed under another webhook-id (a control run's)."""
    body = resign(name)["body"]
    return {"body": body, "headers": sign(body, FIXTURE_SECRET, wid)}


def effects(db, outbox, wid: str) -> tuple:
    """What the sinks did for one delivery: its ledger rows (sink, channel, status) and the
    messages the outbox holds for it, by kind (no integration is configured)."""
    rows = db.conn.execute("SELECT sink, channel, status FROM delivery_ledger WHERE webhook_id = %s "
                           "ORDER BY sink, channel", [wid]).fetchall()
    lines = [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []
    return rows, Counter(r["kind"] for r in lines if r.get("delivery") == wid)


def inbox(db, wid: str) -> tuple:
    return db.conn.execute("SELECT status, attempts, delivery_attempt FROM webhook_events WHERE webhook_id = %s",
                           [wid]).fetchone()


def key_of(run) -> str:
    """The delivery_attempt the run's preprocessor made (the flow inputs it returned)."""
    pre = next(j for j in run.jobs if j.kind == "preprocessor")
    return pre.result["delivery_attempt"]


def ran_once_each(run) -> bool:
    counts = Counter(steps(run))
    return all(counts[s] == 1 for s in SINKS)


@pytest.mark.parametrize("name", ["payment.succeeded", "subscription.cancelled"])
def test_a_record_step_restarted_after_its_commit_answers_recorded_and_the_sinks_run_once(runner, db, outbox,
                                                                                          fault, name):
    control = runner.run_flow(ENTRY, event=trigger_event(delivery(name, "msg_control")))
    assert control.success and ran_once_each(control)
    wid = webhook_id(name)
    fault.armed = "kill"
    run = runner.run_flow(ENTRY, event=trigger_event(resign(name)))
    assert run.success and not run.skipped, run.result
    first, restarted = fault.results[-2:]
    assert first["status"] == "recorded" and "rerun" not in first
    assert restarted == {"status": "recorded", "rerun": True, "webhook_id": wid, "inbox_status": "processed",
                         "attempts": 1, "applied": False}
    assert ran_once_each(run)
    crm, notify = (next(j.result for j in run.jobs if j.step_id == s) for s in ("crm", "notify"))
    assert crm["delivery"] == notify["delivery"] == wid
    # The same side effects as a run without the fault, each once.
    rows, messages = effects(db, outbox, wid)
    assert rows and (rows, messages) == effects(db, outbox, "msg_control")
    assert inbox(db, wid) == ("processed", 1, key_of(run))


def test_a_record_step_retried_after_a_lost_commit_answer_answers_recorded(runner, db, outbox, sleeps, fault):
    wid = webhook_id("subscription.active")
    fault.armed = "drop"
    run = runner.run_flow(ENTRY, event=trigger_event(resign("subscription.active")))
    assert run.success and not run.skipped, run.result
    records = [j for j in run.jobs if j.step_id == "record"]
    assert [j.success for j in records] == [False, True] and len(sleeps) == 1  # one retry, with backoff
    assert [r["status"] for r in fault.results] == ["recorded", "recorded"] and fault.results[1]["rerun"] is True
    assert ran_once_each(run)
    assert effects(db, outbox, wid)[0]
    assert inbox(db, wid) == ("processed", 1, key_of(run))


def test_a_redelivery_is_a_new_attempt_and_still_a_duplicate(runner, db, outbox, fault):
    wid = webhook_id("refund.succeeded")
    fault.armed = "kill"
    first = runner.run_flow(ENTRY, event=trigger_event(resign("refund.succeeded")))
    assert first.success and ran_once_each(first)
    before = outbox.read_text()
    again = runner.run_flow(ENTRY, event=trigger_event(resign("refund.succeeded", ts=int(time.time()) + 5)))
    assert key_of(again) != key_of(first)  # one key per trigger run
    assert again.success and again.skipped and again.result["status"] == "duplicate"
    assert steps(again) == ["flow", "preprocessor", "record"]
    assert outbox.read_text() == before
    assert inbox(db, wid) == ("processed", 2, key_of(first))  # two deliveries; the recording run's key stays


def test_ui_runs_carry_no_key_and_stay_duplicate_per_webhook_id(runner, db, outbox, fault):
    event = envelope("dispute.opened")
    first = runner.run_flow(ENTRY, {"event": event, "webhook_id": "msg_ui_1"})
    assert first.success and "preprocessor" not in steps(first) and ran_once_each(first)
    assert inbox(db, "msg_ui_1") == ("processed", 1, None)
    assert runner.run_flow(ENTRY, {"event": event, "webhook_id": "msg_ui_1"}).result["status"] == "duplicate"
    # Without a key a restarted record step cannot tell its own commit: a duplicate, as before.
    fault.armed = "kill"
    pasted = runner.run_flow(ENTRY, {"event": envelope("license_key.created")})
    assert pasted.skipped and [r["status"] for r in fault.results[-2:]] == ["recorded", "duplicate"]


def test_the_flow_documents_and_passes_the_delivery_attempt(runner, db):
    flow = yaml.safe_load((ROOT / "f/dodo/webhook__flow/flow.yaml").read_text())
    schema = flow["schema"]
    prop = schema["properties"]["delivery_attempt"]
    assert prop["type"] == "string" and "preprocessor" in prop["description"]
    assert "delivery_attempt" in schema["order"] and "delivery_attempt" not in schema["required"]
    steps_ = {m["id"]: m for m in flow["value"]["modules"]}
    assert steps_["record"]["value"]["input_transforms"]["call"]["expr"] == "flow_input.record"  # key inside
    python = steps_["normalize_record"]["value"]["input_transforms"]
    assert python["delivery_attempt"]["expr"] == "flow_input.delivery_attempt ?? null"
    for step in ("record", "normalize_record"):
        assert steps_[step]["stop_after_if"]["expr"] == 'result.status === "duplicate" || result.test === true'

    run = runner.run_flow(ENTRY, event=trigger_event(resign("payout.success")))
    pre = next(j for j in run.jobs if j.kind == "preprocessor").result
    assert set(pre) <= set(schema["properties"])  # every flow input the preprocessor sets is declared
    assert isinstance(pre["delivery_attempt"], str) and len(pre["delivery_attempt"]) >= 32
    assert pre["record"]["attempt"] == pre["delivery_attempt"]
