# requirements:
# anyio==4.16.0
# certifi==2026.10.19.post1
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# psycopg-binary==3.3.9
# psycopg==3.3.9
# standardwebhooks==1.1.0
# typing_extensions==4.16.0
# wmill==1.850.0
"""Sign a sample event with the webhook secret, post it to the webhook URL, check it arrived."""

import os

import wmill

from f.dodo.lib import db as pg
from f.dodo.lib import selftest
from f.dodo.lib.resources import postgresql

SECRET = "f/dodo/webhook_secret"


def main(
    webhook_url: str,
    db: postgresql,
    wait_seconds: int = 30,
    token_variable: str = "",
    schema: str = "dodo",
) -> dict:
    secret = wmill.get_variable(SECRET)
    # A webhook-specific token from a variable, else this job's own token (same workspace).
    token = wmill.get_variable(token_variable) if token_variable else os.environ.get("WM_TOKEN")
    with pg.connect(db, schema) as conn:
        return selftest.send_test_event(webhook_url, secret, lambda wid: selftest.inbox_row(conn, wid),
                                        token=token, wait_s=wait_seconds)
