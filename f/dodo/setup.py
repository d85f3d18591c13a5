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
# typing-inspection==0.4.5
# typing_extensions==4.16.0
# wmill==1.850.0
"""Set the bundle up in one run: Dodo endpoint, signing secret, migrations, doctor's report."""

import os
from typing import Optional

import wmill

from f.dodo.lib import db as pg
from f.dodo.lib import doctor
from f.dodo.lib import schema as migrations
from f.dodo.lib import setup
from f.dodo.lib import workspace as ws
from f.dodo.lib.reconcile import client_from_resource
from f.dodo.lib.resources import dodo_payments, postgresql


def main(
    dodo: dodo_payments,
    db: postgresql,
    event_types: Optional[list[str]] = None,
    webhook_url: str = "",
    schema: str = "dodo",
    switch_mode: bool = False,
) -> dict:
    mode = setup.check_mode(dodo.get("environment"))
    setup.check_workspace_mode(ws.optional_variable(ws.DODO_MODE), mode, switch_mode)
    filter_types = setup.check_event_types(setup.expand(event_types))
    workspace = wmill.get_workspace()
    url = webhook_url or setup.endpoint_url(os.environ.get("WM_BASE_URL", ""), workspace)
    with setup.dodo_api_errors(dodo), client_from_resource(dodo, timeout=30, max_retries=2) as client:
        endpoint = setup.ensure_endpoint(client, url, workspace, mode, filter_types)
        secret = client.webhooks.retrieve_secret(endpoint.id).secret
    secret_change = setup.store_secret(secret, ws.optional_variable, ws.set_secret)
    wmill.set_variable(ws.DODO_MODE, mode)
    with pg.connect(db, schema, check=False) as conn:  # the owner's step: db must own the schema
        applied = migrations.migrate(conn, schema)
    return setup.report(endpoint, mode, secret_change, schema, applied,
                        doctor.run_windmill(schema, dodo=dodo, webhook_url=url))
