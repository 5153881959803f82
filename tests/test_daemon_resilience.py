"""The daemon's sync loop survives anything and says when it cannot (issue 9, items 7, 12):
an unexpected error is one failed sync with a sentence, a dead loop makes /health unhealthy,
any sync pushes the schedule back, and a sign-in syncs at once. Real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import psycopg

from localstore import Store
from tests.support import ALICE
from tests.support.daemons import DaemonProc
from tests.support.procs import wait_for

Spawn = Callable[..., DaemonProc]




def on_remote(remote: psycopg.Connection) -> int:
    return remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]


def test_an_unexpected_error_fails_one_sync_in_a_sentence_and_the_daemon_goes_on(
    spawn: Spawn, store: Store, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("unexpected")
    store.add_message(conv.id, "user", "hello")
    # The start-up sync meets an error nothing in chatsync expects (as a UnicodeEncodeError).
    daemon = spawn(watch="off", interval_seconds=3600,
                   env={"CHATSYNC_FAULT": "sent:message:1:raise"}).start()
    wait_for(lambda: daemon.idle_after(1), 30, "the start-up sync")
    last = daemon.status()["daemon"]["last_sync"]
    assert last["ok"] is False and "unexpected error (InjectedFault" in last["error"]
    assert last["transient"] is False
    assert daemon.get("/health").status_code == 200

    done = daemon.cli("sync-now", timeout=30)  # answered by the same, living loop
    assert done.returncode == 0, done.stderr + daemon.log()
    assert "by the daemon" in done.stdout and on_remote(remote) == 1
    assert daemon.status()["daemon"]["state"] == "idle"


def test_health_is_unhealthy_when_the_sync_loop_has_died(
    spawn: Spawn, store: Store
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("dies")
    store.add_message(conv.id, "user", "hello")
    daemon = spawn(watch="off", interval_seconds=3600,
                   env={"CHATSYNC_FAULT": "sent:message:1:escape"}).start()
    wait_for(lambda: daemon.get("/health").status_code != 200, 30, "health to turn")
    health = daemon.get("/health")
    assert health.status_code == 503
    assert health.json()["ok"] is False and "sync loop has stopped" in health.json()["error"]
    done = daemon.cli("sync-now", timeout=30)  # refused at once, never a hang
    assert done.returncode != 0


def test_any_sync_pushes_the_schedule_back(spawn: Spawn, store: Store) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("schedule")
    daemon = spawn(watch="native", interval_seconds=30, debounce_ms=100).start()
    wait_for(lambda: daemon.idle_after(1), 30, "the start-up sync")
    first = datetime.fromisoformat(daemon.status()["daemon"]["next_scheduled"])
    time.sleep(4)  # the edit's sync comes well after the start-up one
    store.add_message(conv.id, "user", "an edit syncs now")
    wait_for(lambda: daemon.syncs()["by_reason"].get("edit", 0) >= 1, 30, "the edit's sync")
    after = datetime.fromisoformat(daemon.status()["daemon"]["next_scheduled"])
    assert (after - first).total_seconds() >= 3, (first, after)


def test_a_sign_in_syncs_at_once_not_after_the_debounce(
    spawn: Spawn, store: Store, remote: psycopg.Connection
) -> None:
    conv = store.create_conversation("made while signed out")
    store.add_message(conv.id, "user", "hello")
    daemon = spawn(watch="native", interval_seconds=3600, debounce_ms=20000,
                   max_wait_ms=30000).start()
    wait_for(lambda: daemon.idle_after(1), 30, "the start-up sync")
    store.sign_in(ALICE)
    wait_for(lambda: on_remote(remote) == 1, 6, "the sign-in's sync (debounce is 20s)")
    assert daemon.syncs()["by_reason"].get("sign-in", 0) >= 1
