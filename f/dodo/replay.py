# requirements:
# annotated-types==0.8.0
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Replay failed deliveries through the entry flow, oldest event first: failed inbox rows,
and (source job_history / both) failed runs of f/dodo/webhook from Windmill's job history."""

from typing import Literal, Optional

from f.dodo.lib import db as pg
from f.dodo.lib import replay as rp
from f.dodo.lib.resources import postgresql
from f.dodo.lib.workspace import integration_refs, webhook_secrets


def main(
    db: postgresql,
    webhook_ids: Optional[list[str]] = None,
    event_types: Optional[list[str]] = None,
    since: str = "",
    until: str = "",
    status: Optional[list[Literal["failed", "received"]]] = None,
    dry_run: bool = False,
    limit: int = 100,
    source: Literal["inbox", "job_history", "both"] = "inbox",
    schema: str = "dodo",
    resend_unknown: bool = False,
) -> dict:
    # resend_unknown: also select events holding a Slack/SMS send of unknown outcome (it
    # may have been delivered) and send those again, at the risk of a duplicate.
    selection = rp.Selection(tuple(webhook_ids or ()), tuple(event_types or ()), rp.parse_time(since),
                             rp.parse_time(until), tuple(status or ("failed",)), limit, resend_unknown)
    rows = []
    with pg.connect(db, schema) as conn:
        if source in ("job_history", "both"):  # first: what never reached the inbox
            runs = rp.history_runs(selection.since, limit)
            rows += rp.replay_history(conn, runs, webhook_secrets(), rp.run_entry_flow, integration_refs(),
                                      rp.report_progress, dry_run=dry_run)
        if source in ("inbox", "both"):
            picked = rp.select(conn, selection)
            rows += (rp.plan(conn, picked) if dry_run
                     else rp.replay(conn, picked, rp.run_entry_flow, integration_refs(), rp.report_progress,
                                    resend_unknown=resend_unknown))
    return rp.rich_result(rows, dry_run=dry_run)
