# requirements:
# font-roboto==0.0.1
# psycopg2-binary==2.9.13
# resvg-py==0.5.0
"""Daily revenue report: figures per currency, sent to Slack and email, shown as a rich result."""

import os
from datetime import date, datetime, timedelta, timezone
from typing import Optional

from f.dodo.lib import channels, reports
from f.dodo.lib import db as pg
from f.dodo.lib import routing as rules
from f.dodo.lib import workspace as ws
from f.dodo.lib.resources import postgresql, slack, smtp


def _day(text: str) -> date:
    if not text:
        return (datetime.now(timezone.utc) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"day must be YYYY-MM-DD, got {text[:40]!r}") from None


def main(
    db: postgresql,
    day: str = "",
    routing: Optional[str] = None,
    slack: Optional[slack] = None,
    smtp: Optional[smtp] = None,
    slack_webhook_url: Optional[str] = None,
    send: bool = True,
    schema: str = "dodo",
) -> dict:
    config = rules.load(routing)  # recipients: the notification routing's slack_channel, email_from, email_to
    # Not given (the schedule passes no optional integration): the workspace's, if any.
    found, skipped = ws.message_channels(slack, smtp, slack_webhook_url)
    with pg.connect(db, schema) as conn:
        report = reports.build(conn, _day(day))
        if send:
            reports.send(conn, report, **found, slack_channel=config.slack_channel, email_from=config.email_from,
                         email_to=config.email_to,
                         slack_api=os.environ.get("DODO_SLACK_API_URL", channels.SLACK_API))
    return reports.rich_result(report, skipped if send else [])
