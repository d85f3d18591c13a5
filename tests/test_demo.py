"""`make demo` (local_runner.demo) against the session's Postgres: its summary's figures
match an independent computation from the stream it delivered."""
from collections import defaultdict
from decimal import Decimal

import pytest

from local_runner.demo import run_demo
from tests.iso4217 import major

CHURNED = {"cancelled", "expired", "failed"}


@pytest.fixture
def schema_name():
    return "dodo"


@pytest.fixture
def demo(db, tmp_path, monkeypatch):
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    lines = []
    result = run_demo(db.url, outbox=str(tmp_path / "outbox.jsonl"), out=lines.append)
    return result, "\n".join(lines)


def expected(stream) -> dict:
    """Revenue, MRR and subscription state recomputed from the events themselves."""
    gross, refunds, lost, payments = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
    subs = {}
    for d in sorted(stream.events, key=lambda d: d.envelope["timestamp"]):  # event time, not arrival
        etype, data = d.envelope["type"], d.envelope["data"]
        if etype == "payment.succeeded":
            gross[data["currency"]] += data["total_amount"]
            payments[data["currency"]] += 1
        elif etype == "refund.succeeded":
            refunds[data["currency"]] += data["amount"]
        elif etype == "dispute.lost":
            lost[data["currency"]] += int(data["amount"])
        elif etype.startswith("subscription."):
            subs[data["subscription_id"]] = data
    mrr = defaultdict(Decimal)
    for s in subs.values():
        if s["status"] == "active":
            per_year = {"Month": 12, "Year": 1}[s["payment_frequency_interval"]]
            mrr[s["currency"]] += Decimal(s["recurring_pre_tax_amount"]) * per_year / 12
    currencies = sorted(set(gross) | set(refunds) | set(lost))
    return {
        "revenue": {c: (payments[c], major(gross[c], c), major(refunds[c], c), major(lost[c], c),
                        major(gross[c] - refunds[c] - lost[c], c)) for c in currencies},
        "mrr": {c: major(int(v), c) for c, v in mrr.items()},
        "subscriptions": {k: v["status"] for k, v in subs.items()},
    }


def test_demo_summary_matches_an_independent_computation(demo):
    result, text = demo
    want = expected(result["stream"])
    cols, rows = result["tables"]["revenue"]
    got = {r[0]: (int(r[1]), *map(str, r[2:])) for r in rows}  # as text: "1000" is not "1000.00"
    assert got == want["revenue"]
    assert set(got) == {"USD", "JPY", "KWD"}  # more than one currency, zero- and three-decimal ones
    # the stream's own figures, as literals (local_runner/demo.py: Kenji's JPY, Layla's KWD)
    assert got["JPY"] == (1, "120000", "20000", "0", "100000")
    assert got["KWD"] == (1, "12.500", "0.000", "12.500", "0.000")
    cols, rows = result["tables"]["mrr"]
    assert {r[0]: str(r[2]) for r in rows} == want["mrr"]
    assert {r[0]: str(r[2]) for r in rows}["JPY"] == "10000"  # 120000 JPY a year
    cols, rows = result["tables"]["subscriptions"]
    assert {r[0]: r[3] for r in rows} == want["subscriptions"]
    # the printed summary carries the same figures
    for currency, (_n, _gross, _ref, _lost, net) in want["revenue"].items():
        assert any(currency in line and line.rstrip().endswith(str(net)) for line in text.splitlines())


def test_demo_stream_has_duplicates_and_out_of_order_deliveries(demo):
    result, _ = demo
    order, events = result["order"], result["stream"].events
    assert len(order) > len(events)  # redeliveries
    stamps = [d.envelope["timestamp"] for d in order[:len(events)]]
    assert stamps != sorted(stamps)  # out of order
    kinds = {d.envelope["type"] for d in events}
    assert {"payment.succeeded", "subscription.renewed", "subscription.plan_changed", "refund.succeeded",
            "dispute.opened", "subscription.cancelled"} <= kinds


def test_demo_paths_come_from_the_job_log(demo):
    result, text = demo
    paths = result["paths"]
    assert all(p["success"] for p in paths)
    first_seen, dupes = set(), []
    for p in paths:
        (dupes if p["webhook_id"] in first_seen else []).append(p)
        first_seen.add(p["webhook_id"])
    assert len(dupes) == len(result["order"]) - len(result["stream"].events)
    assert all(p["skipped"] and p["jobs"] == 3 and "duplicate: stopped" in p["path"] for p in dupes)
    fresh = [p for p in paths if p not in dupes]
    assert all(p["jobs"] == 8 and "[crm | notify]" in p["path"] for p in fresh)
    inbox = dict(result["tables"]["inbox"][1])
    assert inbox == {"processed": len(result["stream"].events)}


def test_demo_outbox_holds_crm_and_notifications(demo):
    result, text = demo
    kinds = {r["kind"] for r in result["outbox"]}
    assert {"hubspot", "slack"} <= kinds
    urgent = [r for r in result["outbox"] if r["kind"] == "slack" and "Dispute opened" in (r.get("text") or "")]
    assert len(urgent) == 1  # the redelivered dispute.opened did not alert twice
    assert f"{len(result['outbox'])} message(s)" in text


def test_demo_shows_the_destinations_in_the_outbox_and_the_ledger(demo):
    """PostHog, Segment, Mailchimp and Google Calendar go to local stand-ins of their APIs
    (local_runner/destination_standins.py, checking each request as the provider documents
    it): what they accepted is in the outbox, each delivery's ledger rows in the summary."""
    result, text = demo
    assert result["refused"] == []
    box = [{k: v for k, v in r.items() if k != "at"} for r in result["outbox"]]
    posthog = [r for r in box if r["kind"] == "posthog"]
    assert {"kind": "posthog", "event": "payment.succeeded", "distinct_id": "cus_layla", "revenue": "12.500",
            "amount": "12.500", "currency": "KWD"} in posthog
    assert {"kind": "posthog", "event": "refund.succeeded", "distinct_id": "cus_ken", "revenue": "-20000",
            "amount": "20000", "currency": "JPY"} in posthog
    assert len(posthog) == len(result["stream"].events)  # once per event: the redeliveries sent nothing
    tracks = [r for r in box if r["kind"] == "segment" and r["call"] == "track"]
    assert len(tracks) == len(result["stream"].events)
    last_tags = {r["member"]: r["tags"] for r in box if r["kind"] == "mailchimp"}
    assert last_tags == {"ada@example.com": ["dodo-customer"], "kenji@example.jp": ["dodo-customer"],
                         "layla@example.com.kw": ["dodo-churned"], "bob@example.com": ["dodo-churned"]}
    calendar = [r for r in box if r["kind"] == "gcal"]
    dispute = [r for r in calendar if str(r.get("summary", "")).startswith("Dispute response due: Layla")]
    assert [("date" in r, r.get("date")) for r in dispute] == [(True, "2026-02-03"), (False, None)]  # put, then removed
    line = next(x for x in text.splitlines() if x.startswith("  msg_demo_012"))
    assert "destinations: posthog sent, segment sent, gcal sent, mailchimp sent" in line
