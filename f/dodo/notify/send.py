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
"""Send one normalised Dodo event to its routed channels (Slack, email, SMS), once each."""

import os

from f.dodo.lib import channels, ledger, routing as rules
from f.dodo.lib.notify import Transports, notify
from f.dodo.lib.resources import postgresql, slack, smtp, twilio


def main(event: dict, routing: str | None = None, slack: slack | None = None, smtp: smtp | None = None,
         twilio: twilio | None = None, postgresql: postgresql | None = None,
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
