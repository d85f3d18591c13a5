# requirements:
# anyio==4.16.0
# certifi==2026.10.19.post1
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# typing_extensions==4.16.0
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
