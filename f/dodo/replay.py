# requirements:
# annotated-types==0.8.0
# anyio==4.16.0
# certifi==2026.10.19.post1
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
# wmill==1.850.0
"""Replay failed or dead-lettered deliveries through the entry flow, oldest event first."""

from typing import Literal, Optional

from f.dodo.lib import db as pg
from f.dodo.lib import replay as rp
from f.dodo.lib.workspace import integration_refs
from f.dodo.lib.resources import postgresql


def main(
    db: postgresql,
    webhook_ids: Optional[list[str]] = None,
    event_types: Optional[list[str]] = None,
    since: str = "",
    until: str = "",
    status: Optional[list[Literal["failed", "received"]]] = None,
    dry_run: bool = False,
    limit: int = 100,
    schema: str = "dodo",
    resend_unknown: bool = False,
) -> dict:
    # resend_unknown: also select events holding a Slack/SMS send of unknown outcome (it
    # may have been delivered) and send those again, at the risk of a duplicate.
    selection = rp.Selection(tuple(webhook_ids or ()), tuple(event_types or ()), rp.parse_time(since),
                             rp.parse_time(until), tuple(status or ("failed",)), limit, resend_unknown)
    with pg.connect(db, schema) as conn:
        rows = rp.select(conn, selection)
        if dry_run:
            return rp.rich_result(rp.plan(conn, rows), dry_run=True)
        done = rp.replay(conn, rows, rp.run_entry_flow, integration_refs(), rp.report_progress,
                         resend_unknown=resend_unknown)
    return rp.rich_result(done, dry_run=False)
