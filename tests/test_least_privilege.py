"""The bundle under a least-privilege role: rows only, migrations as the owner's step.

The README's statements ("Least privilege") run as written, with real roles in the test
Postgres: the owner runs f/dodo/migrate, the bundle's role gets DML rights only. The
whole entry flow (record, sinks, failure module, duplicates) works under that role, DDL
is refused, and a schema behind the code fails the job at once, naming the fix.
"""
import json
import re
import uuid

import pytest
from fixture_data import FIXTURE_SECRET, envelope, resign, sign

from f.dodo.lib import db as dblib
from f.dodo.lib import schema as migrations
from f.dodo.lib.errors import SchemaBehind
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from tests.conftest import drop_schema

ENTRY = "f/dodo/webhook"
SCHEMA = "dodo"  # the flows use the scripts' default schema
PASSWORD = "change-me"  # as in the README; the test server trusts loopback anyway
INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE


def readme_statements() -> tuple[str, str]:
    """(the superuser's statements, the owner's grants) from the README's SQL block."""
    section = (ROOT / "README.md").read_text().split("### Least privilege", 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    superuser, rest = block.split("-- 2.", 1)
    return superuser, rest.split("\n", 1)[1]


def trigger_event(delivery: dict) -> dict:
    return {"kind": "webhook", "body": json.loads(delivery["body"]), "raw_string": delivery["body"],
            "query": {}, "headers": {k.replace("-", "_"): v for k, v in delivery["headers"].items()}}


class Roles:
    def __init__(self, pg_url: str):
        suffix = uuid.uuid4().hex[:8]
        self.pg_url, self.owner, self.app = pg_url, f"dodo_owner_{suffix}", f"dodo_app_{suffix}"

    def sql(self, text: str) -> str:
        return text.replace("dodo_owner", self.owner).replace("dodo_app", self.app)

    def url(self, role: str) -> str:
        return dblib.resource_to_dsn(dict(dblib.dsn_to_resource(self.pg_url), user=role, password=PASSWORD))

    def connect(self, role: str) -> dblib.Connection:
        return dblib.connect(self.url(role), SCHEMA, check=False)


def superuser(pg_url: str) -> dblib.Connection:
    return dblib.connect(pg_url, SCHEMA, check=False)


def refused(statement, *args) -> None:
    """`statement` fails with Postgres' insufficient_privilege."""
    with pytest.raises(dblib.Error) as failed:
        statement(*args)
    assert failed.value.pgcode == INSUFFICIENT_PRIVILEGE, failed.value


@pytest.fixture
def roles(pg_url):
    roles = Roles(pg_url)
    first, grants = readme_statements()
    drop_schema(pg_url, SCHEMA)
    dblib.forget_migrated()
    with superuser(pg_url) as su:
        su.execute(roles.sql(first))
    quiet_wmill_client()
    owner_runner = Runner(ROOT, bundle_config(roles.url(roles.owner), FIXTURE_SECRET))
    migrated = owner_runner.run_script("f/dodo/migrate", {"db": "$res:f/dodo/postgres"})
    assert migrated.success, migrated.result
    with roles.connect(roles.owner) as owner:
        owner.execute(roles.sql(grants))
    dblib.forget_migrated()
    yield roles
    drop_schema(pg_url, SCHEMA)
    dblib.forget_migrated()
    with superuser(pg_url) as su:
        for role in (roles.app, roles.owner):
            su.execute(f'DROP OWNED BY "{role}"')
            su.execute(f'DROP ROLE "{role}"')


@pytest.fixture
def app_runner(roles, outbox, sleeps):
    return Runner(ROOT, bundle_config(roles.url(roles.app), FIXTURE_SECRET), sleep=sleeps.append,
                  random=lambda: 0.5)


def rejected_delivery() -> dict:
    """A signed payment whose payload lacks payment_id: the store records it as failed."""
    env = envelope("payment.succeeded")
    del env["data"]["payment_id"]
    body = json.dumps(env)
    return {"headers": sign(body, FIXTURE_SECRET, "msg_lp_rejected"), "body": body}


def test_the_entry_flow_works_under_the_dml_only_role(roles, app_runner):
    names = ["payment.succeeded", "refund.succeeded", "subscription.active", "dispute.opened",
             "license_key.created", "payout.success", "credit.added"]
    for name in names:
        run = app_runner.run_flow(ENTRY, event=trigger_event(resign(name)))
        assert run.success, (name, run.result)
    again = app_runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded")))
    assert again.success and again.skipped  # a duplicate, told apart under the role too
    failed = app_runner.run_flow(ENTRY, event=trigger_event(rejected_delivery()))
    assert not failed.success  # the failure module recorded it, under the same role
    with roles.connect(roles.app) as app:
        rows = dict(app.execute("SELECT status, count(*) FROM dodo.webhook_events GROUP BY status").fetchall())
        assert rows == {"processed": len(names), "failed": 1}
        state = migrations.status(app, SCHEMA)
    assert state == {"schema": SCHEMA, "version": migrations.latest(), "latest": migrations.latest(),
                     "behind": False, "missing": [], "excess": []}


def test_ddl_is_refused_to_the_bundle_role(roles):
    with roles.connect(roles.app) as app:
        for ddl in ("CREATE TABLE dodo.intruder (x int)", "ALTER TABLE dodo.payments ADD COLUMN x int",
                    "DROP TABLE dodo.payments", "TRUNCATE dodo.payments"):
            refused(app.execute, ddl)
        refused(migrations.migrate, app, SCHEMA)  # a job cannot migrate, even if it tried
    with roles.connect(roles.owner) as owner:  # the owner can, which is why it is a separate step
        owner.execute("CREATE TABLE dodo.owner_made (x int)")
        owner.execute("DROP TABLE dodo.owner_made")


def test_a_missing_privilege_is_reported(roles):
    with roles.connect(roles.owner) as owner:
        owner.execute(f'REVOKE INSERT ON dodo.payments FROM "{roles.app}"')
        owner.execute(f'GRANT CREATE ON SCHEMA dodo TO "{roles.app}"')
    with roles.connect(roles.app) as app:
        state = migrations.status(app, SCHEMA)
    assert state["missing"] == ["INSERT on payments"]
    assert state["excess"] == [f"CREATE ON SCHEMA {SCHEMA}"]


def test_a_schema_behind_fails_the_job_at_once_naming_the_fix(roles, app_runner, sleeps):
    latest = migrations.latest()
    with roles.connect(roles.owner) as owner:  # as if the code were deployed before its migration
        owner.execute("DELETE FROM dodo.schema_migrations WHERE version = %s", [latest])
    with pytest.raises(SchemaBehind, match="run f/dodo/migrate with the owner role"):
        dblib.connect(roles.url(roles.app), SCHEMA)
    run = app_runner.run_flow(ENTRY, event=trigger_event(resign("payment.succeeded")))
    assert not run.success
    records = [j for j in run.jobs if j.step_id == "record"]
    assert len(records) == 1 and sleeps == []  # no retries: waiting cannot migrate the schema
    error = records[0].result["error"]  # the SQL record step: record_delivery checks the version
    previous = max(v for v, _, _ in migrations.migrations() if v < latest)
    assert error["name"] == "Anyhow" and (f"SchemaBehind: schema dodo is at version {previous}, the code needs "
                                          f"{latest}: run f/dodo/migrate with the owner role") in error["message"]
    with roles.connect(roles.app) as app:  # the failure module kept the delivery, nothing was migrated
        row = app.execute("SELECT status, failed_step FROM dodo.webhook_events").fetchall()
        assert row == [("failed", "record")]
        assert migrations.version(app, SCHEMA) == previous
        assert migrations.status(app, SCHEMA)["behind"] is True
