# requirements:
# annotated-types==0.8.0
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# PyMySQL==1.2.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Mirror customers, payments, subscriptions and refunds into MySQL/MariaDB (f/dodo/mysql)."""

from datetime import timedelta
from typing import Optional

from f.dodo.lib import db as pg
from f.dodo.lib import mysql_mirror as mirror
from f.dodo.lib import workspace as ws
from f.dodo.lib.resources import mysql, postgresql


def _workspace_mysql() -> Optional[dict]:
    return ws.optional_resource(mirror.RESOURCE_PATH)


def main(
    db: postgresql,
    mysql_db: Optional[mysql] = None,
    schema: str = "dodo",
    page: int = 500,
    overlap_minutes: int = 10,
) -> dict:
    target = mysql_db or _workspace_mysql()
    if not target:
        return {"skipped": f"no {mirror.RESOURCE_PATH} resource: create a mysql resource there to mirror"}
    ca_cert = ws.optional_variable(mirror.CA_VARIABLE) if target.get("ssl") else None
    my = mirror.connect(target, ca_cert)
    try:
        with pg.connect(db, schema) as conn:
            result = mirror.mirror_batch(conn, my, page=page, overlap=timedelta(minutes=overlap_minutes))
    finally:
        my.close()
    return result | {"tls": mirror.tls(target, ca_cert)[1]}
