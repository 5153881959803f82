"""Fixtures: a real PostgreSQL (see tests/support/pg.py) and throwaway databases on it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from remote.migrate import migrate
from tests.support import pg


def pytest_report_header(config: pytest.Config) -> str:
    return "postgres: $CHATSYNC_TEST_DSN, else 127.0.0.1:5432, else an embedded pgserver"


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    dsn, how = pg.find_server()
    os.environ.setdefault("CHATSYNC_TEST_SERVER", how)
    return dsn


@pytest.fixture(scope="session")
def full_template(admin_dsn: str) -> Iterator[str]:
    """A database with chatsync's full schema and the test audit, to copy per test."""
    name = pg.create_database(admin_dsn, "chatsync_tpl")
    dsn = pg.dsn_for(admin_dsn, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    pg.run_sql_file(dsn, "audit.sql")
    yield name
    pg.drop_database(admin_dsn, name)


@pytest.fixture
def remote_dsn(admin_dsn: str, full_template: str) -> Iterator[str]:
    """A fresh database with the full schema (corrected analytics)."""
    name = pg.create_database(admin_dsn, "chatsync_t", template=full_template)
    yield pg.dsn_for(admin_dsn, name)
    pg.drop_database(admin_dsn, name)


@pytest.fixture
def original_dsn(admin_dsn: str) -> Iterator[str]:
    """A fresh database with a faithful copy of the web app's original schema and triggers."""
    name = pg.create_database(admin_dsn, "chatsync_orig")
    dsn = pg.dsn_for(admin_dsn, name)
    pg.run_sql_file(dsn, "original_app_schema.sql")
    pg.run_sql_file(dsn, "audit.sql")
    yield dsn
    pg.drop_database(admin_dsn, name)


@pytest.fixture
def remote(remote_dsn: str) -> Iterator[psycopg.Connection]:
    """A superuser connection to the remote, for looking at what arrived."""
    with psycopg.connect(remote_dsn, autocommit=True) as conn:
        yield conn
