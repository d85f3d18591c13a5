# requirements:
# psycopg2-binary==2.9.13
"""Export payments, refunds, subscriptions or disputes created in a date range as CSV."""

from typing import Literal

from f.dodo.lib import db as pg
from f.dodo.lib import export
from f.dodo.lib.resources import postgresql


def main(
    db: postgresql,
    kind: Literal["payments", "refunds", "subscriptions", "disputes"],
    date_from: str,
    date_to: str = "",
    schema: str = "dodo",
) -> dict:
    first, last = export.day_range(date_from, date_to)
    with pg.connect(db, schema) as conn:
        columns, rows = export.query_rows(conn, kind, first, last)
    return export.file_result(kind, first, last, export.to_csv(columns, rows))
