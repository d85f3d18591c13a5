# requirements:
# psycopg2-binary==2.9.13
"""Send the daily digest of the notifications routed in digest mode."""

import os

from f.dodo.lib import channels, ledger, routing as rules
from f.dodo.lib import workspace as ws
from f.dodo.lib.notify import Transports, send_digest
from f.dodo.lib.resources import postgresql, slack, smtp


def main(postgresql: postgresql, routing: str | None = None, slack: slack | None = None,
         smtp: smtp | None = None, slack_webhook_url: str | None = None, schema: str = "dodo") -> dict:
    config = rules.load(routing)
    # Not given (the schedule passes no optional integration): the workspace's, if any.
    found, skipped = ws.message_channels(slack, smtp, slack_webhook_url)
    transports = Transports(**found, slack_api=os.environ.get("DODO_SLACK_API_URL", channels.SLACK_API))
    conn = ledger.connect(postgresql, schema)
    try:
        return {**send_digest(conn, config, transports), "skipped": skipped}
    finally:
        conn.close()
