# requirements:
# psycopg2-binary==2.9.13
"""Send one normalised Dodo event to its routed channels (Slack, email, SMS), once each."""

import os

from f.dodo.lib import channels, ledger, routing as rules
from f.dodo.lib.notify import Transports, notify
from f.dodo.lib.resources import configured, dodo_twilio, postgresql, slack, smtp


def main(event: dict, routing: str | None = None, slack: slack | None = None, smtp: smtp | None = None,
         twilio: dodo_twilio | None = None, postgresql: postgresql | None = None,
         slack_webhook_url: str | None = None, schema: str = "dodo") -> dict:
    # an empty resource or variable (passed because it exists) counts as not configured
    transports = Transports(slack=configured(slack), slack_webhook_url=configured(slack_webhook_url),
                            smtp=configured(smtp), twilio=configured(twilio),
                            slack_api=os.environ.get("DODO_SLACK_API_URL", channels.SLACK_API),
                            twilio_api=os.environ.get("DODO_TWILIO_API_URL", channels.TWILIO_API))
    config = rules.load(routing)  # a bad variable fails before anything is sent
    conn = ledger.connect(postgresql, schema)
    try:
        return notify(conn, event, config, transports)
    finally:
        if conn:
            conn.close()
