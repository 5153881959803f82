"""Fixtures: real `chatsync run` processes (see tests/support/daemons.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemons import DaemonProc


@pytest.fixture
def spawn(tmp_path: Path, store_path: Path, remote_dsn: str) -> Iterator[Callable[..., DaemonProc]]:
    """Real `chatsync run` processes on the store (another DSN or store when asked);
    killed at the end if still running."""
    procs: list[DaemonProc] = []

    def make(dsn: str = remote_dsn, store: Path = store_path, **kw: object) -> DaemonProc:
        proc = DaemonProc.for_store(tmp_path, store, dsn, **kw)  # type: ignore[arg-type]
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.close()
