"""SIGTERM in the middle of a large first sync: a clean, bounded exit, and no double counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from daemon.run import STOP_BOUND_S
from localstore import Store
from tests.conftest import ALICE
from tests.daemon_proc import DaemonProc, wait_for
from tests.remote_facts import audited_truth, usage

MESSAGES = 12_000
INSERT_MESSAGE = (
    "INSERT INTO messages (id, conversation_id, role, content, model, input_tokens, "
    "output_tokens, total_tokens) VALUES (?, ?, ?, ?, 'gpt-test', ?, ?, ?)"
)


def fill(store_path: Path) -> None:
    with Store(store_path) as store:
        store.sign_in(ALICE, "alice@example.com")
        conversations = [store.create_conversation(f"c{i}").id for i in range(40)]
    with sqlite3.connect(store_path) as conn:
        conn.executemany(INSERT_MESSAGE, (
            (f"msg_{i:06d}", conversations[i % 40], "user" if i % 2 else "assistant",
             f"message {i}", i % 7, i % 11, i % 7 + i % 11) for i in range(MESSAGES)
        ))


@pytest.fixture
def daemons(tmp_path: Path, store_path: Path, remote_dsn: str) -> Iterator[list[DaemonProc]]:
    procs: list[DaemonProc] = []
    yield procs
    for proc in procs:
        proc.close()


@pytest.mark.slow
def test_sigterm_during_a_large_sync_exits_0_and_a_restart_agrees_and_counts_once(
    daemons: list[DaemonProc], tmp_path: Path, store_path: Path, remote_dsn: str,
    remote: psycopg.Connection,
) -> None:
    fill(store_path)
    first = DaemonProc(tmp_path, store_path, remote_dsn, interval_seconds=3600, batch_size=100)
    daemons.append(first)
    first.start()
    wait_for(lambda: (first.status()["daemon"]["syncing"] or {}).get("sent", 0) > 0,
             60, "the large sync to be under way")
    assert first.stop(timeout=STOP_BOUND_S + 20) == 0
    log = first.log()
    assert "SIGTERM received" in log and ("stopped" in log or "abandoned" in log)
    arrived = remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
    assert arrived < MESSAGES, "the sync finished before the signal; make the store larger"

    second = DaemonProc(tmp_path, store_path, remote_dsn, interval_seconds=3600,
                        batch_size=1000)
    daemons.append(second)
    second.start()
    wait_for(lambda: second.status()["pending"]["messages"] == 0
             and second.status()["daemon"]["state"] == "idle", 120, "the restart to catch up")
    assert second.stop() == 0

    with sqlite3.connect(store_path) as conn:
        local = dict(conn.execute("SELECT id, content FROM messages").fetchall())
    on_remote = dict(remote.execute("SELECT id, content FROM chat_messages").fetchall())
    assert on_remote == local
    assert usage(remote) == audited_truth(remote)  # every message counted exactly once
