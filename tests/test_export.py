"""CSV export against the fixture stream's final states."""

from __future__ import annotations

import base64
import csv
import io
from datetime import date, datetime, timezone

import pytest

from f.dodo import export as entry
from f.dodo.lib.store import record_delivery
from tests.iso4217 import major
from tests.ops_stream import BUSINESS, build_stream, iso


@pytest.fixture(scope="module")
def stream():
    return build_stream(days=20, seed=3)


@pytest.fixture
def loaded(make_db, stream):
    db = make_db()
    for webhook_id, envelope in stream.deliveries:
        record_delivery(db.conn, envelope, webhook_id)
    return db


def read(result: dict) -> tuple[str, list[dict]]:
    assert list(result) == ["file"]
    text = base64.b64decode(result["file"]["content"]).decode("utf-8")
    return result["file"]["filename"], list(csv.DictReader(io.StringIO(text)))


def in_range(text: str, first: date, last: date) -> bool:
    return first <= datetime.fromisoformat(text.replace("Z", "+00:00")).date() <= last


@pytest.mark.parametrize("kind,amount_key,amount_col", [
    ("payments", "total_amount", "total"), ("refunds", "amount", "amount"),
    ("subscriptions", "recurring_pre_tax_amount", "recurring_pre_tax"), ("disputes", "amount", "amount"),
])
def test_rows_and_amounts_match_the_stream(loaded, stream, kind, amount_key, amount_col):
    first, last = date(2026, 2, 5), date(2026, 2, 12)
    name, rows = read(entry.main(loaded.resource, kind, first.isoformat(), last.isoformat(), schema=loaded.schema))
    assert name == f"dodo_{kind}_2026-02-05_2026-02-12.csv"
    id_key = kind[:-1] + "_id"
    want = sorted((o for o in stream.final[kind].values() if in_range(o["created_at"], first, last)),
                  key=lambda o: (o["created_at"], o[id_key]))
    assert want, "the range must hold some objects"
    assert [r[id_key] for r in rows] == [o[id_key] for o in want]
    for row, obj in zip(rows, want):
        assert row[amount_col] == major(int(obj[amount_key]), obj["currency"])
        assert row["currency"] == obj["currency"]
        assert row["customer_email"] == obj["customer"]["email"]
        assert datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")) == \
            datetime.fromisoformat(obj["created_at"].replace("Z", "+00:00"))
    if kind == "payments":  # net = total - succeeded refunds, exact
        refunded = {}
        for r in stream.final["refunds"].values():
            if r["status"] == "succeeded":
                refunded[r["payment_id"]] = refunded.get(r["payment_id"], 0) + r["amount"]
        for row, obj in zip(rows, want):
            net = obj["total_amount"] - refunded.get(obj["payment_id"], 0)
            assert row["net"] == major(net, obj["currency"])


def test_formula_text_is_neutralised(make_db):
    db = make_db()
    data = {"payment_id": "pay_evil", "business_id": BUSINESS, "status": "succeeded", "total_amount": 1234,
            "currency": "KWD", "created_at": iso(datetime(2026, 4, 1, 12, tzinfo=timezone.utc)),
            "customer": {"customer_id": "cus_evil", "email": "e@example.com", "name": "x"},
            "error_message": '=HYPERLINK("http://evil.example","click")'}
    record_delivery(db.conn, {"business_id": BUSINESS, "type": "payment.succeeded",
                              "timestamp": data["created_at"], "data": data}, "msg_evil")
    _, rows = read(entry.main(db.resource, "payments", "2026-04-01", schema=db.schema))
    assert rows[0]["error_message"].startswith("'=HYPERLINK")
    assert rows[0]["total"] == "1.234"  # KWD has three decimals


def test_amounts_in_each_currencys_own_decimals(make_db):
    """Literals, not the bundle's formatter: 1000 JPY is "1000", 1234 KWD is "1.234"."""
    db = make_db()
    at = iso(datetime(2026, 4, 2, 12, tzinfo=timezone.utc))
    for n, (currency, minor) in enumerate([("JPY", 1000), ("KWD", 1234), ("USD", 5), ("JPY", 7)]):
        data = {"payment_id": f"pay_{n}", "business_id": BUSINESS, "status": "succeeded", "total_amount": minor,
                "currency": currency, "created_at": at,
                "customer": {"customer_id": "cus_1", "email": "a@example.com", "name": "A"}}
        record_delivery(db.conn, {"business_id": BUSINESS, "type": "payment.succeeded", "timestamp": at,
                                  "data": data}, f"msg_{n}")
    _, rows = read(entry.main(db.resource, "payments", "2026-04-02", schema=db.schema))
    assert {r["payment_id"]: (r["total"], r["net"], r["currency"]) for r in rows} == {
        "pay_0": ("1000", "1000", "JPY"), "pay_1": ("1.234", "1.234", "KWD"), "pay_2": ("0.05", "0.05", "USD"),
        "pay_3": ("7", "7", "JPY")}


def test_bad_arguments(make_db):
    db = make_db()
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        entry.main(db.resource, "payments", "01/02/2026", schema=db.schema)
    with pytest.raises(ValueError, match="before"):
        entry.main(db.resource, "payments", "2026-02-02", "2026-02-01", schema=db.schema)
    with pytest.raises(ValueError, match="kind"):
        entry.main(db.resource, "payouts", "2026-02-02", schema=db.schema)
    _, rows = read(entry.main(db.resource, "refunds", "2026-02-02", schema=db.schema))
    assert rows == []


def test_large_export_goes_to_object_storage_with_progress(loaded, stream, monkeypatch, s3):
    """Through the local runner: past INLINE_MAX the CSV is streamed (server-side cursor,
    BATCH rows a round trip) to the workspace object storage (wmill.write_s3_file), here a
    real S3 API (the conftest moto server), and the result is {"s3": key}; the object is
    read back from that server; progress climbs to 100."""
    from tests.provider_standins import S3_BUCKET  # noqa: PLC0415
    from f.dodo.lib import export  # noqa: PLC0415
    from local_runner import Config, Runner  # noqa: PLC0415
    from local_runner.demo import ROOT, quiet_wmill_client  # noqa: PLC0415

    monkeypatch.setattr(export, "INLINE_MAX", 2_000)
    monkeypatch.setattr(export, "BATCH", 5)
    client, endpoint = s3
    monkeypatch.setenv("DODO_OBJECT_STORE", f"s3://{S3_BUCKET}/export-test")
    for name, value in {"AWS_ENDPOINT_URL": f"http://{endpoint}", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    quiet_wmill_client()
    percents = []
    runner = Runner(ROOT, Config(resources={"f/dodo/postgres": loaded.resource}),
                    on_progress=lambda _job, p: percents.append(p))
    args = {"db": "$res:f/dodo/postgres", "kind": "payments", "date_from": "2026-02-01", "date_to": "2026-02-20",
            "schema": loaded.schema}
    out = runner.run_script("f/dodo/export", args)
    assert out.success, out.result
    assert list(out.result) == ["s3"]
    key = out.result["s3"]
    assert key.startswith("dodo/exports/") and key.endswith("/dodo_payments_2026-02-01_2026-02-20.csv")
    obj = client.get_object(Bucket=S3_BUCKET, Key=f"export-test/{key}")
    assert obj["ContentType"] == "text/csv"
    text = obj["Body"].read().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    want = [o for o in stream.final["payments"].values() if in_range(o["created_at"], date(2026, 2, 1),
                                                                      date(2026, 2, 20))]
    assert len(text.encode()) > 2_000 and len(rows) == len(want) > 10
    assert {r["payment_id"] for r in rows} == {o["payment_id"] for o in want}
    assert percents == sorted(percents) and percents[-1] == 100 and len(percents) > len(want) // 5
    # a small range stays inline
    small = runner.run_script("f/dodo/export", dict(args, date_from="2026-02-05", date_to="2026-02-05"))
    assert list(small.result) == ["file"]
