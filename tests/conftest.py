"""Fixtures: a real PostgreSQL (see tests/pg.py), throwaway databases, real store files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from localstore import Store
from remote.migrate import migrate
from tests import pg
from tests.daemon_proc import DaemonProc
from tests.pull_support import Device

ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
BOB = "bbbbbbbb-0000-4000-8000-000000000002"


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    dsn, how = pg.find_server()
    os.environ.setdefault("CHATSYNC_TEST_SERVER", how)
    return dsn


def pytest_report_header(config: pytest.Config) -> str:
    return "postgres: $CHATSYNC_TEST_DSN, else 127.0.0.1:5432, else an embedded pgserver"


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


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "chatsync.db"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    with Store(store_path) as s:
        yield s


@pytest.fixture
def spawn(tmp_path: Path, store_path: Path, remote_dsn: str) -> Iterator[Callable[..., DaemonProc]]:
    """Real `chatsync run` processes on the store (another DSN or store when asked)."""
    procs: list[DaemonProc] = []

    def make(dsn: str = remote_dsn, store: Path = store_path, **kw: object) -> DaemonProc:
        proc = DaemonProc(tmp_path, store, dsn, **kw)  # type: ignore[arg-type]
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.close()


@pytest.fixture
def devices(tmp_path: Path, remote_dsn: str) -> Iterator[Callable[..., Device]]:
    """Devices syncing directly with the remote, each signed in as *user* (Alice)."""
    made: list[Device] = []

    def make(name: str, user: str = ALICE) -> Device:
        d = Device(tmp_path / name / "chatsync.db", remote_dsn)
        d.store.sign_in(user, f"{name}@example.com")
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
