# requirements:
# psycopg2-binary==2.9.13
"""Apply pending database migrations: the schema owner's explicit step (jobs never migrate)."""


from f.dodo.lib import db as pg
from f.dodo.lib import schema as migrations
from f.dodo.lib.resources import postgresql


def main(db: postgresql, schema: str = "dodo") -> dict:
    with pg.connect(db, schema, check=False) as conn:
        applied = migrations.migrate(conn, schema)
        return {"schema": schema, "applied": applied, "versions": migrations.applied(conn, schema)}
