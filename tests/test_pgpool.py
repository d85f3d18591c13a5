"""local_runner.pgpool: `make serve`'s jobs share Postgres connections (issue 12 item 5),
each handed back clean."""
from __future__ import annotations

import pytest

from f.dodo.lib import db as dblib
from local_runner import pgpool


@pytest.fixture
def pool():
    pool = pgpool.install(max_idle=2)
    yield pool
    pgpool.uninstall()


def test_a_closed_connection_is_reused_and_handed_back_clean(pool, db):
    opened = pool.opened  # the fixtures' own connections
    with dblib.connect(db.resource, db.schema) as first:
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        first.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
    with dblib.connect(db.resource, db.schema) as again:
        assert again.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    second = dblib.connect(db.resource, db.schema, autocommit=False)  # other arguments: a new one
    second.execute("INSERT INTO pool_probe VALUES (1)")
    second.close()  # an open transaction: rolled back, never committed by the next user
    third = dblib.connect(db.resource, db.schema, autocommit=False)
    assert third.info.transaction_status == dblib.TX_IDLE
    assert third.execute("SELECT count(*) FROM pool_probe").fetchone()[0] == 0
    third.close()
    assert pool.opened - opened == 2


def test_the_pool_keeps_at_most_max_idle_and_never_blocks(pool, db):
    opened = pool.opened
    conns = [dblib.connect(db.resource, db.schema) for _ in range(4)]  # more than max_idle at once
    pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}
    for c in conns:
        c.close()
    assert len(pids) == 4 and pool.opened - opened <= 4
    assert sum(len(idle) for idle in pool._idle.values()) <= 2  # the others were really closed
    with pytest.raises(AttributeError):
        conns[0].execute("SELECT 1")  # a handed-back connection is not usable any more
