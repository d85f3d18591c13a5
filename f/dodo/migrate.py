# requirements:
# psycopg-binary==3.3.9
# psycopg==3.3.9
# typing_extensions==4.16.0
"""Apply pending database migrations (the store also does this on first use)."""

from typing import TypedDict

from f.dodo.lib import db as pg
from f.dodo.lib import schema as migrations


class postgresql(TypedDict):
    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str
    root_certificate_pem: str


def main(db: postgresql, schema: str = "dodo") -> dict:
    with pg.connect(db, schema, migrate=False) as conn:
        applied = migrations.migrate(conn, schema)
        return {"schema": schema, "applied": applied, "versions": migrations.applied(conn, schema)}
