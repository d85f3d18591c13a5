# requirements:
"""Create the HubSpot property group and custom properties the CRM sync writes (idempotent)."""

import os

from f.dodo.lib.hubspot import API, HubSpot, setup
from f.dodo.lib.resources import hubspot


def main(hubspot: hubspot) -> dict:
    client = HubSpot(hubspot["token"], os.environ.get("DODO_HUBSPOT_API_URL", API))
    try:
        return setup(client)
    finally:
        client.close()
