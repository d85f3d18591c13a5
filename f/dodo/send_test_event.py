# requirements:
# annotated-types==0.8.0
# anyio==4.16.0
# certifi==2026.10.19.post1
# distro==1.9.0
# dodopayments==1.123.0
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# sniffio==1.3.1
# standardwebhooks==1.1.0
# typing-inspection==0.4.5
# typing_extensions==4.16.0
# wmill==1.850.0
"""Post a signed test delivery to the endpoint Dodo uses and check it reached the inbox."""

import os
from typing import Optional

import wmill

from f.dodo.lib import db as pg
from f.dodo.lib import selftest
from f.dodo.lib import workspace as ws
from f.dodo.lib.reconcile import client_from_resource
from f.dodo.lib.resources import dodo_payments, postgresql


def main(
    webhook_url: str = "",
    db: Optional[postgresql] = None,
    wait_seconds: int = 30,
    token_variable: str = "",
    schema: str = "dodo",
    dodo: Optional[dodo_payments] = None,
) -> dict:
    stored = wmill.get_variable(ws.WEBHOOK_SECRET)
    url, secret = webhook_url, stored
    if dodo:  # sign with Dodo's secret for the endpoint, post to the URL Dodo posts to
        from f.dodo.lib import setup  # noqa: PLC0415

        wm_base = os.environ.get("WM_BASE_URL", "")  # always set in a Windmill job; the metadata match suffices
        base = webhook_url or (setup.endpoint_url(wm_base, wmill.get_workspace()) if wm_base else "")
        with setup.dodo_api_errors(dodo), client_from_resource(dodo, timeout=30) as client:
            dodo_url, secret = selftest.endpoint_from_dodo(client, wmill.get_workspace(), base)
        url = webhook_url or dodo_url
    if not url:
        raise ValueError("webhook_url is empty: pass the entry flow's URL, or the dodo resource to use the "
                         "endpoint Dodo posts to")
    # A webhook-specific token from a variable, else this job's own token (same workspace).
    token = wmill.get_variable(token_variable) if token_variable else os.environ.get("WM_TOKEN")
    db = db or wmill.get_resource(ws.POSTGRES)
    with pg.connect(db, schema) as conn:
        result = selftest.send_test_event(url, secret, lambda wid: selftest.inbox_row(conn, wid),
                                          token=token, wait_s=wait_seconds)
    return selftest.explain(result, bool(dodo), (stored == secret) if dodo else None)
