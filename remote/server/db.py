"""The server's database pool, and a user's session on a pooled connection.

A *sync* `psycopg_pool.ConnectionPool`, used from worker threads, rather than an async pool:
the push and pull code (remote/push.py, remote/pull.py) is synchronous psycopg, and the
server must run that very code, not an async copy of it that could drift. One request holds
one connection for the few milliseconds of its transactions, in a thread from anyio's pool;
the event loop stays free for parsing, auth and other requests.

Connections are made as `remote.connect.connect` makes them: autocommit, no server-side
prepared statements (`prepare_threshold=None`), everything chatsync sets transaction-local,
so the pool is safe behind PgBouncer or Supavisor in transaction mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from remote.connect import UserSession, conninfo
from remote.server.auth import Identity
from remote.server.metrics import POOL_IN_USE

HEALTH_QUERY = "SELECT 1"


class DatabaseDown(Exception):
    """No connection could be had in time, or the one we had broke."""


def make_pool(dsn: str, size: int, timeout_s: float) -> ConnectionPool:
    return ConnectionPool(
        conninfo(dsn, "chatsync-server"), min_size=1, max_size=size, timeout=timeout_s, open=False,
        kwargs={"autocommit": True, "prepare_threshold": None},
        # A connection a pooler or a restart closed is replaced before a request gets it.
        check=ConnectionPool.check_connection,
        # Give up on a failed connection attempt after this; the next request retries.
        reconnect_timeout=max(timeout_s, 10), name="chatsync",
    )


@contextmanager
def connection(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    try:
        with pool.connection() as conn:
            POOL_IN_USE.inc()
            try:
                yield conn
            finally:
                POOL_IN_USE.dec()
    except PoolTimeout as exc:
        raise DatabaseDown("no database connection within the pool timeout") from exc


@contextmanager
def user_session(
    pool: ConnectionPool, identity: Identity, origin: str | None
) -> Iterator[UserSession]:
    """The verified user's session (row-level security as `identity.user_id`)."""
    with connection(pool) as conn:
        yield UserSession(conn, identity.user_id, identity.email, origin=origin or "")


def healthy(pool: ConnectionPool) -> bool:
    try:
        with connection(pool) as conn:
            conn.execute(HEALTH_QUERY)
        return True
    except (DatabaseDown, psycopg.Error):
        return False
