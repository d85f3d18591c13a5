# requirements:
# anyio==4.16.0
# certifi==2026.10.19.post1
# duckdb==1.5.5
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# psycopg2-binary==2.9.13
# typing_extensions==4.16.0
# wmill==1.850.0
"""Export new inbox rows as Parquet to the workspace object storage (scheduled)."""

import wmill

from f.dodo.lib import db as pg
from f.dodo.lib import warehouse
from f.dodo.lib.errors import ConfigError
from f.dodo.lib.resources import postgresql


def _write(key: str, data: bytes) -> None:
    """Windmill's workspace object storage (wmill.write_s3_file)."""
    try:
        wmill.write_s3_file(wmill.S3Object(s3=key), data, None, content_type="application/vnd.apache.parquet")
    except Exception as exc:  # noqa: BLE001 - wmill raises bare Exceptions; the cursor stays put
        raise ConfigError("workspace object storage", f"writing {key} failed ({str(exc)[:200]})",
                          "configure it in Workspace settings -> Object Storage (S3), or disable the "
                          "schedule f/dodo/warehouse_export; the next run resumes from the same row") from None


def main(db: postgresql, prefix: str = warehouse.PREFIX, batch: int = warehouse.BATCH,
         schema: str = "dodo") -> dict:
    with pg.connect(db, schema) as conn:
        return warehouse.export(conn, _write, prefix=prefix, batch=batch)
