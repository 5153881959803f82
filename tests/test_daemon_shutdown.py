"""SIGTERM in the middle of a large first sync: a clean, bounded exit, and no double counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from daemon.run import STOP_BOUND_S
from localstore import Store
from tests.support import ALICE
from tests.support.daemons import DaemonProc
from tests.support.procs import wait_for
from tests.support.remote_facts import audited_truth, usage
from tests.support.stores import fill

MESSAGES = 12_000


@pytest.mark.slow
def test_sigterm_during_a_large_sync_exits_0_and_a_restart_agrees_and_counts_once(
    spawn: Callable[..., DaemonProc], store_path: Path, remote: psycopg.Connection,
) -> None:
    with Store(store_path) as store:
        store.sign_in(ALICE, "alice@example.com")
    fill(store_path, ALICE, conversations=40, per_conversation=MESSAGES // 40)
    first = spawn(interval_seconds=3600, batch_size=100).start()
    wait_for(lambda: (first.status()["daemon"]["syncing"] or {}).get("sent", 0) > 0,
             60, "the large sync to be under way")
    assert first.stop(timeout=STOP_BOUND_S + 20) == 0
    log = first.log()
    assert "SIGTERM received" in log and ("stopped" in log or "abandoned" in log)
    arrived = remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
    assert arrived < MESSAGES, "the sync finished before the signal; make the store larger"

    second = spawn(interval_seconds=3600, batch_size=1000).start()
    wait_for(lambda: second.status()["pending"]["messages"] == 0
             and second.status()["daemon"]["state"] == "idle", 120, "the restart to catch up")
    assert second.stop() == 0

    with sqlite3.connect(store_path) as conn:
        local = dict(conn.execute("SELECT id, content FROM messages").fetchall())
    on_remote = dict(remote.execute("SELECT id, content FROM chat_messages").fetchall())
    assert on_remote == local
    assert usage(remote) == audited_truth(remote)  # every message counted exactly once
