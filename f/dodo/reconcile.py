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
"""Reconcile Postgres with the Dodo API: record what webhooks missed, report drift."""

from typing import Optional

from f.dodo.lib import db as pg
from f.dodo.lib import heal
from f.dodo.lib import reconcile as rec
from f.dodo.lib import setup
from f.dodo.lib import workspace as ws
from f.dodo.lib.resources import dodo_payments, postgresql


def main(
    db: postgresql,
    dodo: Optional[dodo_payments] = None,
    lookback_days: int = 7,
    full: bool = False,
    dry_run: bool = False,
    kinds: Optional[list[str]] = None,
    schema: str = "dodo",
    heal_sinks: bool = True,
) -> dict:
    unknown = sorted(set(kinds or ()) - set(rec.BY_KIND))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}: use {sorted(rec.BY_KIND)}")
    dodo = dodo or ws.optional_resource(ws.DODO_API)  # the schedule passes none: optional
    if not dodo:
        return {"status": "skipped", "skipped": [f"reconcile: {ws.DODO_API} (a dodo_payments resource) is not "
                                                 "configured: create it to reconcile with the Dodo API"]}
    with setup.dodo_api_errors(dodo), rec.client_from_resource(dodo) as client, pg.connect(db, schema) as conn:
        # what webhooks missed also reaches the CRM and notifications, once (delivery ledger)
        on_recorded = heal.sinks(conn, *heal.workspace_sinks(), heal.workspace_destinations()) if heal_sinks and not dry_run else None
        result = rec.reconcile(conn, client, kinds=tuple(kinds or rec.BY_KIND), lookback_days=lookback_days,
                               full=full, dry_run=dry_run, on_recorded=on_recorded)
    return rec.rich_result(result)
