"""A Postgres connection pool for `make serve`.

On Windmill every database job is a fresh process that opens its own connection; the
local server runs those jobs as threads of one process, where opening three connections
per delivery (record, CRM, notifications) costs more than the steps' own queries. So
`make serve` swaps the bundle's `f.dodo.lib.db.connect` for one that hands out idle
connections of the same target (same arguments) and takes them back on `close()` (or
at the end of a `with` block), rolled back to a clean state. It holds at most
`max_idle` idle connections per target and never waits: past that, connections are
opened and closed as before. Tests and `python -m local_runner run` keep the plain
`connect`, as Windmill's jobs do.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Callable

from f.dodo.lib import db

_installed: dict[str, Any] = {}


class Pool:
    def __init__(self, connect: Callable[..., Any], max_idle: int = 16):
        self._connect, self.max_idle = connect, max_idle
        self._idle: dict[tuple, list] = defaultdict(list)
        self._lock = threading.Lock()
        self.opened = 0  # connections opened through the pool, for tests and benchmarks

    def connect(self, target, schema: str = "dodo", **kwargs) -> "PooledConnection":
        key = (repr(target), schema, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with self._lock:
            idle = self._idle[key]
            conn = idle.pop() if idle else None
        if conn is None or _closed(conn):
            conn = self._connect(target, schema, **kwargs)
            self.opened += 1
        return PooledConnection(conn, self, key)

    def release(self, conn, key: tuple) -> None:
        try:
            if _closed(conn):
                return
            conn.rollback()  # an open transaction never leaks into the next job
        except Exception:  # noqa: BLE001 - a broken connection is dropped
            _close(conn)
            return
        with self._lock:
            idle = self._idle[key]
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        _close(conn)

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            _close(conn)


class PooledConnection:
    """The driver's connection, except that closing it gives it back to the pool."""

    def __init__(self, conn, pool: Pool, key: tuple):
        self.__dict__.update(_conn=conn, _pool=pool, _key=key)

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):
        setattr(self._conn, name, value)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # as the driver's own `with`: commit a pending transaction unless an error escaped
        if not getattr(self._conn, "autocommit", True) and not _closed(self._conn):
            (self._conn.rollback if exc_type else self._conn.commit)()
        self.close()

    @property
    def closed(self):
        return self.__dict__["_conn"] is None or _closed(self.__dict__["_conn"])

    def close(self) -> None:
        conn = self.__dict__["_conn"]
        if conn is not None:
            self.__dict__["_conn"] = None
            self._pool.release(conn, self._key)


def _closed(conn) -> bool:
    return bool(getattr(conn, "closed", False))


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


def install(max_idle: int = 16) -> Pool:
    """Route `f.dodo.lib.db.connect` through a pool (idempotent); returns the pool."""
    if "pool" not in _installed:
        pool = Pool(db.connect, max_idle)
        _installed.update(pool=pool, original=db.connect)
        db.connect = pool.connect
    return _installed["pool"]


def uninstall() -> None:
    if "pool" in _installed:
        db.connect = _installed["original"]
        _installed.pop("pool").close()
        _installed.clear()
