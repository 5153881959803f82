"""Fixtures: a real `chatsync serve` checking HS256 tokens, and the auth stand-in issuing
them (see tests/support/servers.py and auth_standin.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ALICE, BOB
from tests.support.auth_standin import AuthStandIn
from tests.support.devices import PASSWORD
from tests.support.servers import HS_SECRET, ServerProc, hs_token


@pytest.fixture
def server(tmp_path: Path, remote_dsn: str) -> Iterator[ServerProc]:
    """`chatsync serve` on the remote, tokens checked with HS_SECRET (no JWKS)."""
    proc = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET).start()
    yield proc
    proc.stop()


@pytest.fixture
def auth() -> Iterator[AuthStandIn]:
    """Alice and Bob (password PASSWORD) at the auth stand-in, which issues real HS256
    access tokens signed with the server's secret."""
    standin = AuthStandIn(
        users={"alice@example.com": (ALICE, PASSWORD), "bob@example.com": (BOB, PASSWORD)},
        make_access_token=lambda user, exp: hs_token(user, exp_in=exp - time.time()),
    ).start()
    yield standin
    standin.stop()
