# requirements:
# psycopg2-binary==2.9.13
"""Sync one normalised Dodo event to HubSpot, then to the other configured per-event
destinations (analytics, email campaigns, calendar), each once per delivery.

The contact's state comes from the customer's rows in Postgres (delivery order does not
matter); without a database, from the event alone. One step for all of them: a
destination costs no Windmill job (docs/internals.md, "Sinks and the job budget").
"""

import os

from f.dodo.lib import crm, destinations as dests, ledger
from f.dodo.lib.hubspot import API, HubSpot
from f.dodo.lib.resources import hubspot, postgresql


def main(event: dict, hubspot: hubspot | None = None, postgresql: postgresql | None = None,
         schema: str = "dodo", destinations: dict | None = None) -> dict:
    # Cheap to build: the HTTP pool (and its TLS context) is the process's, reused by each step.
    client = HubSpot(hubspot["token"], os.environ.get("DODO_HUBSPOT_API_URL", API)) \
        if hubspot and hubspot.get("token") else None
    conn = ledger.connect(postgresql, schema)
    try:
        try:
            result = crm.sync(conn, event, client)
        except crm.SyncError as exc:  # the CRM failing does not hold back the others
            dests.deliver(conn, event, destinations, failed=[exc])
            raise
        others = dests.deliver(conn, event, destinations)
        return result | ({"destinations": others} if others else {})
    finally:
        if conn:
            conn.close()
