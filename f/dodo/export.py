# requirements:
# anyio==4.16.0
# certifi==2026.10.19.post1
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# psycopg2-binary==2.9.13
# typing_extensions==4.16.0
# wmill==1.850.0
"""Export payments, refunds, subscriptions or disputes created in a date range as CSV."""

import os
import tempfile
from typing import Literal

import wmill

from f.dodo.lib import db as pg
from f.dodo.lib import export
from f.dodo.lib.resources import postgresql


def _progress(percent: int) -> None:
    try:
        wmill.set_progress(percent)
    except Exception:  # noqa: BLE001 - progress is cosmetic; outside a job there is none
        pass


def _upload(key: str, path: str) -> str:
    """Windmill's workspace object storage (wmill.write_s3_file streams the open file)."""
    with open(path, "rb") as f:
        return wmill.write_s3_file(wmill.S3Object(s3=key), f, None, content_type="text/csv")["s3"]


def main(
    db: postgresql,
    kind: Literal["payments", "refunds", "subscriptions", "disputes"],
    date_from: str,
    date_to: str = "",
    schema: str = "dodo",
) -> dict:
    first, last = export.day_range(date_from, date_to)
    fd, path = tempfile.mkstemp(suffix=".csv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out, pg.connect(db, schema) as conn:
            export.write_csv(conn, kind, first, last, out, _progress)
        result = export.export_result(kind, first, last, path, _upload)
        _progress(100)
        return result
    finally:
        os.unlink(path)
