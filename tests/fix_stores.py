"""Fixtures: real store files, and devices syncing them directly with the remote."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localstore import Store
from tests.support import ALICE
from tests.support.devices import Device


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "chatsync.db"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    with Store(store_path) as s:
        yield s


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
