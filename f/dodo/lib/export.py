"""CSV exports of payments, refunds, subscriptions or disputes for a date range.

`write_csv` streams the rows through a server-side cursor into a file; `export_result`
returns it inline when small and uploads it to Windmill's workspace object storage
(`wmill.write_s3_file`, result `{"s3": key}`) when it would not fit a job result.

Columns are fixed per kind (a stable file for spreadsheets and accountants): ids, the
UTC creation time, status, the currency and exact major-unit amounts (never floats),
the customer's id and email. Text that a spreadsheet would run as a formula (starting
with = + - @, tab or CR) gets a leading apostrophe: customer names come from buyers.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import IO, Callable

from f.dodo.lib.db import ident

# kind -> (table, id column, columns of the table; customer_email comes from customers)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "payments": ("payments", "payment_id", (
        "payment_id", "created_at", "status", "currency", "total", "tax", "refunded", "net", "customer_id",
        "customer_email", "subscription_id", "payment_method", "payment_method_type", "card_network",
        "card_last_four", "charge_type", "invoice_id", "settlement_currency", "settlement", "error_code",
        "error_message", "business_id")),
    "refunds": ("refunds", "refund_id", (
        "refund_id", "created_at", "payment_id", "status", "currency", "amount", "is_partial", "reason",
        "customer_id", "customer_email", "business_id")),
    "subscriptions": ("subscriptions", "subscription_id", (
        "subscription_id", "created_at", "status", "product_id", "currency", "recurring_pre_tax", "quantity",
        "payment_frequency_count", "payment_frequency_interval", "next_billing_date", "previous_billing_date",
        "cancel_at_next_billing_date", "cancelled_at", "customer_id", "customer_email", "business_id")),
    "disputes": ("disputes", "dispute_id", (
        "dispute_id", "created_at", "payment_id", "status", "stage", "currency", "amount", "reason", "remarks",
        "customer_id", "customer_email", "business_id")),
}
_FORMULA = re.compile(r"^[=+\-@\t\r]")


def day_range(date_from: str, date_to: str) -> tuple[date, date]:
    """Inclusive UTC days from YYYY-MM-DD strings; `date_to` defaults to `date_from`."""
    try:
        first = date.fromisoformat(date_from)
        last = date.fromisoformat(date_to) if date_to else first
    except ValueError:
        raise ValueError("date_from and date_to must be YYYY-MM-DD") from None
    if last < first:
        raise ValueError("date_to is before date_from")
    return first, last


def _select(kind: str) -> tuple[tuple[str, ...], str]:
    """(columns, query) of `kind` created in [%s, %s), oldest first."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    table, key, columns = KINDS[kind]
    select = ["c.email" if c == "customer_email" else f"t.{ident(c)}" for c in columns]
    return columns, f"""SELECT {", ".join(select)} FROM {ident(table)} t LEFT JOIN customers c USING (customer_id)
                WHERE t.created_at >= %s AND t.created_at < %s ORDER BY t.created_at, t.{ident(key)}"""


def query_rows(conn, kind: str, first: date, last: date) -> tuple[tuple[str, ...], list[tuple]]:
    """(columns, rows) of `kind` created on the days first..last (UTC), oldest first."""
    columns, query = _select(kind)
    return columns, conn.execute(query, list(_bounds(first, last))).fetchall()


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    text = str(value)
    return "'" + text if isinstance(value, str) and _FORMULA.match(text) else text


def to_csv(columns: tuple[str, ...], rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(columns)
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()


def file_result(kind: str, first: date, last: date, text: str) -> dict:
    """Windmill's rich `file` result: the UI offers it as a download."""
    name = f"dodo_{kind}_{first.isoformat()}_{last.isoformat()}.csv"
    return {"file": {"content": base64.b64encode(text.encode("utf-8")).decode(), "filename": name}}


# --- large exports: streamed to a file, inline when small, object storage when large ------

INLINE_MAX = 1_000_000  # CSV bytes kept in the result: base64 adds a third, under Windmill Cloud's 2 MB cap
BATCH = 2_000  # rows fetched per round trip from the server-side cursor


def count_rows(conn, kind: str, first: date, last: date) -> int:
    query = f"SELECT count(*) FROM {ident(KINDS[kind][0])} WHERE created_at >= %s AND created_at < %s"
    return conn.execute(query, list(_bounds(first, last))).fetchone()[0]


def _bounds(first: date, last: date) -> tuple[datetime, datetime]:
    return (datetime.combine(first, time(0), tzinfo=timezone.utc),
            datetime.combine(last + timedelta(days=1), time(0), tzinfo=timezone.utc))


def write_csv(conn, kind: str, first: date, last: date, out: IO[str],
              progress: Callable[[int], None] = lambda _p: None) -> int:
    """Stream the export into `out` through a server-side cursor (SQL DECLARE/FETCH, BATCH
    rows a round trip: memory stays flat however large the range); `progress(percent)`
    after each batch. Returns the number of rows."""
    columns, query = _select(kind)
    total = count_rows(conn, kind, first, last) or 1
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(columns)
    done = 0
    with conn.transaction():  # a cursor lives in its transaction
        conn.execute(f"DECLARE dodo_export NO SCROLL CURSOR FOR {query}", list(_bounds(first, last)))
        while batch := conn.execute(f"FETCH {int(BATCH)} FROM dodo_export").fetchall():
            writer.writerows([cell(v) for v in row] for row in batch)
            done += len(batch)
            progress(min(99, done * 100 // total))
        conn.execute("CLOSE dodo_export")
    return done


def export_result(kind: str, first: date, last: date, path: str, upload: Callable[[str, str], str]) -> dict:
    """The file at `path` inline (Windmill's `file` result) when small, else uploaded to the
    workspace object storage by `upload(key, path)` and returned as `{"s3": key}`, which
    Windmill shows as a download."""
    name = f"dodo_{kind}_{first.isoformat()}_{last.isoformat()}.csv"
    if os.path.getsize(path) <= INLINE_MAX:
        with open(path, "rb") as f:
            return {"file": {"content": base64.b64encode(f.read()).decode(), "filename": name}}
    return {"s3": upload(f"dodo/exports/{uuid.uuid4().hex[:12]}/{name}", path)}
