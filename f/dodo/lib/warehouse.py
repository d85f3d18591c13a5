"""Scheduled export of new inbox rows as Parquet files to the workspace object storage.

Files: `{prefix}/date=YYYY-MM-DD/part-<cursor>.parquet` (Hive-style day partitions of
the event's UTC date; `<cursor>` the export's position before the batch, 12 digits),
readable by DuckDB (`read_parquet('s3://bucket/dodo/events/*/*.parquet',
hive_partitioning = true)`), BigQuery, Snowflake and ClickHouse (README "Data warehouse").

Exactly once per row: rows are taken in `export_seq` order (migration v040) after the
cursor in `export_cursor`, and the cursor moves, in the same transaction that holds the
export's lock, only after every file of the batch was written. A run that dies between
the write and the cursor update redoes the same batch under the same keys (named by the
cursor), so the files are overwritten, never doubled. A batch ends before the first row
(in number order) younger than `LAG_S`, which waits for the next run with all after it: a
sequence number is taken at insert but seen at commit, so a slow transaction could
otherwise commit a lower number behind the cursor (the guarantee holds for transactions
shorter than LAG_S).

Columns: ids, type, category, status, UTC times, `amount` (exact decimal string in major
units), `amount_minor` (integer), `currency`, and the delivery's JSON `payload` as text.
Money is never a float.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from typing import Callable

import duckdb  # only the scheduled export imports this module

from f.dodo.lib import db
from f.dodo.lib.money import EXPONENTS, format_major

NAME = "warehouse"
PREFIX = "dodo/events"
BATCH = 5000
LAG_S = 60
COLUMNS = ("export_seq BIGINT, webhook_id VARCHAR, event_type VARCHAR, category VARCHAR, status VARCHAR, "
           "business_id VARCHAR, entity_id VARCHAR, customer_id VARCHAR, occurred_at TIMESTAMPTZ, "
           "received_at TIMESTAMPTZ, currency VARCHAR, amount_minor BIGINT, amount VARCHAR, payload VARCHAR")
# Write one object: (key, the file's bytes).
Write = Callable[[str, bytes], object]

# The batch stops before the first young row in sequence order, not just without it: the
# cursor moves to the batch's last number, so a young row left out behind an older-started
# row with a higher number (a transaction that took its number late) would be passed for good.
_ROWS = """
SELECT export_seq, webhook_id, event_type, category, status::text, business_id, entity_id, customer_id,
       occurred_at, received_at, payload::text,
       to_char(coalesce(occurred_at, received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
  FROM webhook_events
 WHERE export_seq > %(after)s
   AND export_seq < coalesce((SELECT min(export_seq) FROM webhook_events
                               WHERE export_seq > %(after)s AND received_at > now() - make_interval(secs => %(lag)s)),
                             9223372036854775807)
 ORDER BY export_seq LIMIT %(batch)s"""


def money(payload: dict) -> tuple[str | None, int | None, str | None]:
    """(currency, amount_minor, amount) of a delivery: the payment's total, else `amount`."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None, None, None
    minor = data.get("total_amount", data.get("amount"))
    currency = str(data.get("currency") or "").upper()
    if currency not in EXPONENTS or isinstance(minor, bool):
        return currency or None, None, None
    try:
        minor = int(minor)
    except (TypeError, ValueError):
        return currency, None, None
    return currency, minor, format_major(minor, currency)


def export(conn, write: Write, *, prefix: str = PREFIX, batch: int = BATCH, lag: float = LAG_S,
           max_batches: int = 100) -> dict:
    """Write every exportable new row, batch by batch; {"rows", "files", "keys", "cursor"}
    (and "skipped" with the reason when there was nothing to write)."""
    rows = files = 0
    keys: list[str] = []
    for _ in range(max_batches):
        done = _one_batch(conn, write, prefix, batch, lag)
        if done is None:
            break
        rows, files = rows + done[0], files + len(done[1])
        keys += done[1]
    result = {"rows": rows, "files": files, "keys": keys, "cursor": _cursor(conn)}
    return result if rows else result | {"skipped": "no new inbox rows to export"}


def _cursor(conn) -> int:
    row = conn.execute("SELECT last_seq FROM export_cursor WHERE name = %s", (NAME,)).fetchone()
    return row[0] if row else 0


def _one_batch(conn, write: Write, prefix: str, batch: int, lag: float):
    with conn.transaction():
        conn.execute("INSERT INTO export_cursor (name) VALUES (%s) ON CONFLICT DO NOTHING", (NAME,))
        after = conn.execute("SELECT last_seq FROM export_cursor WHERE name = %s FOR UPDATE",
                             (NAME,)).fetchone()[0]  # one export at a time
        found = conn.execute(_ROWS, {"after": after, "lag": float(lag), "batch": batch}).fetchall()
        if not found:
            return None
        by_day = defaultdict(list)
        for row in found:
            by_day[row[-1]].append(row[:-1])
        keys = []
        for day, day_rows in sorted(by_day.items()):
            key = f"{prefix.strip('/')}/date={day}/part-{after:012d}.parquet"
            write(key, parquet(day_rows))
            keys.append(key)
        last = found[-1][0]
        conn.execute("UPDATE export_cursor SET last_seq = %s, last_keys = %s, updated_at = now() WHERE name = %s",
                     (last, db.Json(keys), NAME))
    return len(found), keys, last


def parquet(rows: list[tuple]) -> bytes:
    """The rows as one Parquet file (zstd), written by DuckDB."""
    out = []
    for seq, wid, etype, cat, status, biz, entity, cust, occurred, received, payload in rows:
        currency, minor, amount = money(json.loads(payload))
        out.append((seq, wid, etype, cat, status, biz, entity, cust, occurred, received, currency, minor,
                    amount, payload))
    fd, path = tempfile.mkstemp(suffix=".parquet")
    os.close(fd)
    try:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE TABLE batch ({COLUMNS})")
        con.executemany("INSERT INTO batch VALUES (" + ", ".join(["?"] * 14) + ")", out)
        con.execute(f"COPY batch TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
        con.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)
