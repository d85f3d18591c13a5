# requirements:
# psycopg2-binary==2.9.13
"""Send one normalised Dodo event to its routed channels (Slack, email, SMS), once each."""

import os

from f.dodo.lib import channels, ledger, routing as rules
from f.dodo.lib.notify import Transports, notify
from f.dodo.lib.resources import dodo_twilio, postgresql, slack, smtp


def main(event: dict, routing: str | None = None, slack: slack | None = None, smtp: smtp | None = None,
         twilio: dodo_twilio | None = None, postgresql: postgresql | None = None,
         slack_webhook_url: str | None = None, schema: str = "dodo") -> dict:
    transports = Transports(slack=slack, slack_webhook_url=slack_webhook_url or None, smtp=smtp, twilio=twilio,
                            slack_api=os.environ.get("DODO_SLACK_API_URL", channels.SLACK_API),
                            twilio_api=os.environ.get("DODO_TWILIO_API_URL", channels.TWILIO_API))
    config = rules.load(routing)  # a bad variable fails before anything is sent
    conn = ledger.connect(postgresql, schema)
    try:
        return notify(conn, event, config, transports)
    finally:
        if conn:
            conn.close()
