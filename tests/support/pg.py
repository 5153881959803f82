"""Finding a PostgreSQL server for the tests, and making throwaway databases on it.

Order: $CHATSYNC_TEST_DSN; else a server on 127.0.0.1:5432 (user postgres); else an
embedded PostgreSQL 16 from pgserver in a temporary directory, so the suite runs on a
machine with no database server at all.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.procs import free_port

LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def find_server() -> tuple[str, str]:
    """(admin DSN, how it was found)."""
    if os.environ.get("CHATSYNC_TEST_DSN"):
        return os.environ["CHATSYNC_TEST_DSN"], "CHATSYNC_TEST_DSN"
    try:
        psycopg.connect(LOCAL_DSN).close()
        return LOCAL_DSN, "the server on 127.0.0.1:5432"
    except psycopg.OperationalError:
        pass
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="chatsync-test-pg-"))
    server = pgserver.get_server(data, cleanup_mode="delete")
    return server.get_uri(), f"an embedded pgserver PostgreSQL in {data}"


def dsn_for(admin_dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def with_params(dsn: str, **params: str | int) -> str:
    """*dsn* with *params* set (or replaced)."""
    return make_conninfo(**{**conninfo_to_dict(dsn), **params})


def unreachable(dsn: str) -> str:
    """*dsn* pointed at a local port no one listens on (a server that is down)."""
    return with_params(dsn, host="127.0.0.1", port=free_port(), connect_timeout=2)


def create_database(admin_dsn: str, prefix: str, template: str | None = None) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


@contextmanager
def migrated_database(admin_dsn: str, prefix: str) -> Iterator[str]:
    """A throwaway database with chatsync's schema (`chatsync migrate`); its DSN. Dropped
    afterwards."""
    from remote.migrate import migrate

    name = create_database(admin_dsn, prefix)
    try:
        dsn = dsn_for(admin_dsn, name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        yield dsn
    finally:
        drop_database(admin_dsn, name)


def run_sql_file(dsn: str, filename: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((SQL_DIR / filename).read_text().encode())
