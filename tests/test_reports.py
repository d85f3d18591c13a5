"""The revenue report's figures against a direct computation from the fixture stream."""

from __future__ import annotations

import base64
import email
import email.policy
from xml.etree import ElementTree
import functools
import json
import re
import socket
import struct
import zlib
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from aiosmtpd.controller import Controller

from f.dodo.lib import reports, svgchart
from f.dodo.lib.store import record_delivery
from local_runner import Config, Runner
from local_runner.demo import ROOT, quiet_wmill_client
from tests.iso4217 import major
from tests.standin_checks import slack_complete_upload, slack_get_upload_url, slack_post_message, slack_upload
from tests.ops_stream import START, build_stream

PER_YEAR = {"Day": 365, "Week": 52, "Month": 12, "Year": 1}
CHURNED = {"cancelled", "expired", "failed"}


@pytest.fixture(scope="module")
def stream():
    return build_stream(days=40, seed=23)


@pytest.fixture
def loaded(make_db, stream):
    db = make_db()
    for webhook_id, envelope in stream.deliveries:
        assert record_delivery(db.conn, envelope, webhook_id)["status"] == "recorded"
    return db


def day_of(text: str) -> date:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).date()


def fmt(value: Fraction | int, currency: str) -> str:
    return major(value, currency)  # tests/iso4217.py: not the bundle's own table


def expected(stream, day: date) -> dict:
    """Every figure, computed from the deliveries and final states alone."""
    final = stream.final
    gross, refunds, lost, refund_n = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
    for p in final["payments"].values():
        if p["status"] == "succeeded" and day_of(p["created_at"]) == day:
            gross[p["currency"]] += p["total_amount"]
    for r in final["refunds"].values():
        if r["status"] == "succeeded" and day_of(r["created_at"]) == day:
            refunds[r["currency"]] += r["amount"]
            refund_n[r["currency"]] += 1
    last_event = {}
    for _, env in stream.deliveries:
        if env["type"].startswith("dispute."):
            last_event[env["data"]["dispute_id"]] = env
    for env in last_event.values():
        if env["type"] == "dispute.lost" and day_of(env["timestamp"]) == day:
            lost[env["data"]["currency"]] += int(env["data"]["amount"])

    def statuses_until(end: datetime) -> dict:
        st = {}
        for _, env in stream.deliveries:
            if env["type"].startswith("subscription.") and env["timestamp"] < end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"):
                st[env["data"]["subscription_id"]] = env["data"]["status"]
        return st

    def mrr(end: datetime) -> dict:
        out = defaultdict(Fraction)
        for sub_id, status in statuses_until(end).items():
            if status == "active":
                s = final["subscriptions"][sub_id]
                out[s["currency"]] += Fraction(s["recurring_pre_tax_amount"] * s["quantity"]
                                               * PER_YEAR[s["payment_frequency_interval"]],
                                               12 * s["payment_frequency_count"])
        return out

    start = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    end_now, end_before = statuses_until(start + timedelta(days=1)), statuses_until(start)
    mrr_now, mrr_before = mrr(start + timedelta(days=1)), mrr(start)
    first_active = {}
    for _, env in stream.deliveries:
        if env["type"].startswith("subscription.") and env["data"]["status"] == "active":
            first_active.setdefault(env["data"]["subscription_id"], day_of(env["timestamp"]))
    open_disputes = defaultdict(lambda: [0, 0])
    for d in final["disputes"].values():
        if d["dispute_status"] in ("dispute_opened", "dispute_challenged"):
            open_disputes[d["currency"]][0] += 1
            open_disputes[d["currency"]][1] += int(d["amount"])
    currencies = sorted(set(gross) | set(refunds) | set(lost) | set(mrr_now) | set(mrr_before) | set(open_disputes))
    rows = [{
        "currency": c, "payments": sum(1 for p in final["payments"].values() if p["status"] == "succeeded"
                                       and p["currency"] == c and day_of(p["created_at"]) == day),
        "gross": fmt(gross[c], c), "refunds": fmt(refunds[c], c), "disputes_lost": fmt(lost[c], c),
        "net": fmt(gross[c] - refunds[c] - lost[c], c), "mrr": fmt(mrr_now[c], c),
        "mrr_change": ("+" if mrr_now[c] > mrr_before[c] else "") + fmt(mrr_now[c] - mrr_before[c], c),
        "refunds_count": refund_n[c], "open_disputes": open_disputes[c][0],
        "open_disputes_amount": fmt(open_disputes[c][1], c),
    } for c in currencies]
    series = defaultdict(lambda: [0] * 30)
    for p in final["payments"].values():
        offset = (day_of(p["created_at"]) - (day - timedelta(days=29))).days
        if p["status"] == "succeeded" and 0 <= offset < 30:
            series[p["currency"]][offset] += p["total_amount"]
    return {
        "rows": rows,
        "new": sum(1 for d in first_active.values() if d == day),
        "churned": sum(1 for s, st in end_now.items() if st in CHURNED and s in end_before
                       and end_before[s] not in CHURNED),
        "series": dict(series),
    }


def busiest_day(stream) -> date:
    counts = defaultdict(int)
    for _, env in stream.deliveries:
        counts[day_of(env["timestamp"])] += 1
    return max((d for d in counts if d >= START.date() + timedelta(days=30)), key=lambda d: (counts[d], d))


def test_figures_equal_a_direct_computation(loaded, stream):
    checked_churn = checked_refunds = 0
    for day in [busiest_day(stream)] + [START.date() + timedelta(days=n) for n in range(20, 40)]:
        report = reports.build(loaded.conn, day)
        want = expected(stream, day)
        assert reports.rows(report) == want["rows"], day
        assert (report.new_subscriptions, report.churned_subscriptions) == (want["new"], want["churned"]), day
        assert report.series == want["series"], day
        checked_churn += want["churned"]
        checked_refunds += sum(r["refunds_count"] for r in want["rows"])
    # The window exercised every figure (else the comparison above proves little).
    assert checked_churn and checked_refunds
    assert any(r["mrr_change"] != "0" and r["mrr_change"] != "0.00" for r in want["rows"])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_rich_result_markdown_and_svg(loaded, stream):
    day = busiest_day(stream)
    r = reports.build(loaded.conn, day)
    out = reports.rich_result(r)
    assert list(out) == ["render_all"]
    md, svg, table = out["render_all"]
    assert day.isoformat() in md["markdown"] and "| Currency |" in md["markdown"]
    for row in expected(stream, day)["rows"]:
        assert f"| {row['currency']} | {row['gross']} | {row['refunds']} |" in md["markdown"]
    root = ElementTree.fromstring(svg["svg"])  # well-formed, standalone SVG
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")
    bars = root.findall("{http://www.w3.org/2000/svg}rect")[1:]
    assert len(bars) == sum(len(v) for v in r.series.values())
    assert table["table-row-object"] == expected(stream, day)["rows"]
    assert svg["svg"] in reports.email_message(r)["html"]  # the e-mail carries the same chart inline


def test_chart_labels_use_each_currencys_decimals():
    from f.dodo.lib.svgchart import revenue_chart  # noqa: PLC0415

    last = date(2026, 5, 30)
    svg = revenue_chart({"JPY": [0] * 29 + [123456], "KWD": [1234] + [0] * 29, "USD": [0] * 29 + [1999]}, last,
                        "Gross revenue")
    root = ElementTree.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "JPY · 30-day gross 123,456 JPY" in texts and "200,000" in texts  # axis top: a round 2 x 10^5
    assert "KWD · 30-day gross 1.234 KWD" in texts and "2.000" in texts
    assert "USD · 30-day gross 19.99 USD" in texts and "20.00" in texts and "10.00" in texts
    assert "2026-05-30: 123,456 JPY" in titles and "2026-05-01: 1.234 KWD" in titles
    assert texts.count("May 30") == 3 and "May 29" not in texts  # no label crowds the last day's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


def run_report(**args):
    """f/dodo/revenue_report as a job in a workspace with no optional integration (the
    script looks them up: the Windmill client answers only inside a job)."""
    quiet_wmill_client()
    return Runner(ROOT, Config()).run_script("f/dodo/revenue_report", args)


def report(**args) -> dict:
    run = run_report(**args)
    assert run.success, run.result
    return run.result


def test_sends_slack_and_email_once_per_day(loaded, stream, httpserver, monkeypatch, tmp_path):
    day = busiest_day(stream)
    posts = []

    from werkzeug.wrappers import Response  # noqa: PLC0415

    def answer(body: dict) -> Response:
        return Response(json.dumps(body), 200, content_type="application/json")

    def slack(request):
        posts.append(slack_post_message(request, "xoxb-test", channel="#revenue"))
        return answer({"ok": True, "channel": "C0REVENUE1", "ts": "1700000000.000100"})

    # the chart: Slack's external upload flow (reserve, POST the bytes, share in the thread)
    announced, uploads, shares = [], [], []

    def get_upload_url(request):
        announced.append(slack_get_upload_url(request, "xoxb-test"))
        return answer({"ok": True, "upload_url": httpserver.url_for("/upload/F0CHART1"), "file_id": "F0CHART1"})

    def upload(request):
        uploads.append(slack_upload(request, int(announced[-1]["length"])))
        return Response(f"OK - {len(uploads[-1])}", 200, content_type="text/plain")

    def complete(request):
        shares.append(slack_complete_upload(request, "xoxb-test", "F0CHART1"))
        return answer({"ok": True, "files": [{"id": "F0CHART1", "title": shares[-1]["files"][0].get("title")}]})

    httpserver.expect_request("/chat.postMessage", method="POST").respond_with_handler(slack)
    httpserver.expect_request("/files.getUploadURLExternal", method="POST").respond_with_handler(get_upload_url)
    httpserver.expect_request("/upload/F0CHART1", method="POST").respond_with_handler(upload)
    httpserver.expect_request("/files.completeUploadExternal", method="POST").respond_with_handler(complete)
    monkeypatch.setenv("DODO_SLACK_API_URL", httpserver.url_for("").rstrip("/"))
    inbox, port = _Inbox(), _free_port()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    try:
        args = dict(db=loaded.resource, day=day.isoformat(), slack={"token": "xoxb-test"},
                    smtp={"host": "127.0.0.1", "port": port, "user": "", "password": ""},
                    routing=json.dumps({"slack_channel": "#revenue", "email_from": "bot@example.com",
                                        "email_to": ["owner@example.com"], "rules": []}),
                    schema=loaded.schema)
        first = report(**args)
        second = report(**args)
    finally:
        smtpd.stop()
    assert list(first) == ["render_all"] and list(second) == ["render_all"]
    assert len(posts) == 1 and len(inbox.messages) == 1  # the rerun sent nothing again
    assert len(uploads) == 1 and len(shares) == 1  # the chart too, once
    # a PNG (Slack previews PNG, not SVG) of the report's own chart, its text drawn
    assert announced[0]["filename"] == f"revenue-{day.isoformat()}.png"
    svg = reports.chart_svg(reports.build(loaded.conn, day))
    assert uploads[0] == svgchart.png(svg)
    assert _png_size(uploads[0]) == (2 * int(ElementTree.fromstring(svg).get("width")),
                                    2 * int(ElementTree.fromstring(svg).get("height")))
    textless = re.sub(r"<text\b.*?</text>", "", svg, flags=re.S)
    assert textless != svg and svgchart.png(textless) != uploads[0]  # labels, ticks and totals are in it
    assert shares[0]["channel_id"] == "C0REVENUE1" and shares[0]["thread_ts"] == "1700000000.000100"
    assert shares[0]["files"][0]["title"] == f"Revenue report for {day.isoformat()} (UTC)"
    rows = expected(stream, day)["rows"]
    assert posts[0]["channel"] == "#revenue"
    assert all(r["net"] in posts[0]["text"] and r["mrr"] in posts[0]["text"] for r in rows)
    mail = email.message_from_bytes(inbox.messages[0].content, policy=email.policy.default)
    text, html = (mail.get_body((kind,)).get_content() for kind in ("plain", "html"))  # as a mail client reads it
    assert mail["Subject"].startswith("Revenue report for " + day.isoformat())
    assert inbox.messages[0].rcpt_tos == ["owner@example.com"]
    assert all(r["gross"] in text and r["gross"] in html for r in rows)


def test_day_defaults_to_yesterday_and_rejects_bad_dates(make_db, monkeypatch, tmp_path):
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    db = make_db()
    out = report(db=db.resource, schema=db.schema)
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    assert yesterday in out["render_all"][0]["markdown"]
    assert "No revenue" in out["render_all"][0]["markdown"]
    sent = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [s["kind"] for s in sent] == ["slack"]  # no Slack configured: the outbox; no recipients: no email
    bad = run_report(db=db.resource, day="yesterday", schema=db.schema)
    assert not bad.success and bad.result["error"]["name"] == "ValueError"
    assert "YYYY-MM-DD" in bad.result["error"]["message"]


def test_a_channel_another_worker_is_sending_fails_the_run(make_db, monkeypatch, tmp_path):
    """in_progress (another worker's live lease) fails the job like a failure, so Windmill
    retries it; the other channel is sent once, and the retry sends nothing twice."""
    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    monkeypatch.setattr(reports.ledger, "deliver_once", functools.partial(reports.ledger.deliver_once, wait=0))
    db = make_db()
    day = date(2026, 3, 2)
    key = f"revenue_report:{day.isoformat()}"
    db.conn.execute("INSERT INTO delivery_ledger (webhook_id, sink, channel, status, attempts, claim, claimed_at, "
                    "lease_until) VALUES (%s, %s, 'email', 'sending', 1, 'another-worker', now(), "
                    "now() + interval '1 hour')", (key, reports.SINK))
    report = reports.build(db.conn, day)
    with pytest.raises(reports.channels.DeliveryError, match=r"^email: in progress in another worker .*retry later$"):
        reports.send(db.conn, report, email_to=["owner@example.com"])
    db.conn.execute("UPDATE delivery_ledger SET status = 'sent', claim = NULL, lease_until = NULL "
                    "WHERE webhook_id = %s AND channel = 'email'", (key,))  # the other worker ends
    again = reports.send(db.conn, report, email_to=["owner@example.com"])
    assert {c: r["status"] for c, r in again.items()} == {"slack": "skipped", "email": "sent"}
    sent = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [s["kind"] for s in sent] == ["slack"]  # Slack went to the outbox once, email never from here


def _one_day_of_payments(db, day: date) -> None:
    """A JPY, a KWD and a USD payment and a JPY refund on `day`, recorded as deliveries."""
    at = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=9)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    customer = {"customer_id": "cus_lit", "email": "lit@example.com", "name": "Literal"}
    for n, (currency, minor) in enumerate([("JPY", 1000), ("KWD", 1234), ("USD", 2999)]):
        data = {"payment_id": f"pay_lit{n}", "business_id": "bus_lit", "status": "succeeded", "total_amount": minor,
                "currency": currency, "created_at": stamp, "customer": customer}
        record_delivery(db.conn, {"business_id": "bus_lit", "type": "payment.succeeded", "timestamp": stamp,
                                  "data": data}, f"msg_lit_pay{n}")
    refund = {"refund_id": "ref_lit", "payment_id": "pay_lit0", "business_id": "bus_lit", "status": "succeeded",
              "amount": 100, "currency": "JPY", "created_at": stamp, "customer": customer, "is_partial": True}
    record_delivery(db.conn, {"business_id": "bus_lit", "type": "refund.succeeded", "timestamp": stamp,
                              "data": refund}, "msg_lit_ref")


def test_amounts_are_in_each_currencys_own_decimals(make_db):
    """Literals, not the bundle's formatter: 1000 JPY is "1000", 1234 KWD is "1.234"."""
    db, day = make_db(), date(2026, 3, 2)
    _one_day_of_payments(db, day)
    rows = {r["currency"]: r for r in reports.rows(reports.build(db.conn, day))}
    assert {c: (r["gross"], r["refunds"], r["net"]) for c, r in rows.items()} == {
        "JPY": ("1000", "100", "900"), "KWD": ("1.234", "0.000", "1.234"), "USD": ("29.99", "0.00", "29.99")}
