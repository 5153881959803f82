"""The daemon's triggers, on real `chatsync run` processes: edits, schedule, sign-in."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from localstore import Store
from tests.support import ALICE
from tests.support.daemons import DaemonProc
from tests.support.procs import wait_for

Spawn = Callable[..., DaemonProc]




def remote_count(remote: psycopg.Connection, table: str) -> int:
    return remote.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]


def run_sql(store_path: Path, sql: str) -> None:
    """Write as another app would: the sqlite3 shell, or Python's sqlite3 without chatsync."""
    if shutil.which("sqlite3"):
        subprocess.run(["sqlite3", str(store_path), sql], check=True)
    else:
        subprocess.run([sys.executable, "-c", "import sqlite3, sys; "
                        "c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2])",
                        str(store_path), sql], check=True)


def test_plain_sqlite3_write_reaches_postgres_without_sync_now(
    spawn: Spawn, store: Store, store_path: Path, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE, "alice@example.com")
    conv = store.create_conversation("typed elsewhere")
    daemon = spawn(interval_seconds=3600).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")
    assert remote_count(remote, "chat_sessions") == 1  # start-up synced what was pending

    run_sql(store_path, "INSERT INTO messages (id, conversation_id, role, content) "
                        f"VALUES ('msg_plain', '{conv.id}', 'user', 'from the sqlite3 shell')")

    row = wait_for(lambda: remote.execute(
        "SELECT content FROM chat_messages WHERE id = 'msg_plain'").fetchone(), 10,
        "the message on PostgreSQL")
    assert row[0] == "from the sqlite3 shell"
    reasons = daemon.syncs()["by_reason"]
    assert reasons.get("edit", 0) >= 1 and "manual" not in reasons


def test_a_burst_of_edits_is_coalesced_and_every_edit_arrives(
    spawn: Spawn, store: Store, store_path: Path, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("burst")
    daemon = spawn(interval_seconds=3600, debounce_ms=300, max_wait_ms=2000).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")

    # 300 separate transactions from another process: 240 inserts, then 60 updates.
    script = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "for i in range(240):\n"
        "    c.execute(\"INSERT INTO messages (id, conversation_id, role, content) "
        "VALUES (?, ?, 'user', ?)\", (f'msg_b{i:03d}', sys.argv[2], f'v1 {i}'))\n"
        "for i in range(60):\n"
        "    c.execute(\"UPDATE messages SET content = ? WHERE id = ?\", "
        "(f'v2 {i}', f'msg_b{i:03d}'))\n"
        "    time.sleep(0.01)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(store_path), conv.id], check=True)

    wait_for(lambda: remote.execute(
        "SELECT count(*) FILTER (WHERE content LIKE 'v2 %'), count(*) FROM chat_messages"
    ).fetchone() == (60, 240), 20, "all 240 messages, 60 of them updated, on PostgreSQL")
    wait_for(lambda: daemon.status()["daemon"]["state"] == "idle", what="idle")
    syncs = daemon.syncs()
    edit_syncs = syncs["total"] - syncs["by_reason"].get("startup", 0)
    assert 1 <= edit_syncs <= 10, syncs
    assert daemon.status()["pending"]["messages"] == 0


def test_idle_daemon_is_not_woken_by_its_own_writes(
    spawn: Spawn, store: Store, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("quiet")
    for i in range(50):
        store.add_message(conv.id, "user", f"m{i}")
    daemon = spawn(interval_seconds=3600, debounce_ms=100, max_wait_ms=500).start()
    wait_for(lambda: remote_count(remote, "chat_messages") == 50, what="the first sync")
    # The sync's marks wrote the store (file events); give them several debounce windows.
    time.sleep(2.5)
    first = daemon.syncs()
    time.sleep(2.5)
    second = daemon.syncs()
    assert second == first, "syncs kept happening with no edits"
    assert first["total"] == 1, first  # the start-up sync only
    assert first["own_writes_skipped"] >= 1  # the events came, and were recognised


def test_with_file_events_missed_the_schedule_still_syncs(
    spawn: Spawn, store: Store, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("scheduled")
    daemon = spawn(watch="off", interval_seconds=1).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")
    store.add_message(conv.id, "user", "nobody told the daemon")
    wait_for(lambda: remote_count(remote, "chat_messages") == 1, 10, "the scheduled sync")
    status = daemon.status()["daemon"]
    assert status["watching"]["mode"] == "off"
    assert status["syncs"]["by_reason"].get("schedule", 0) >= 1
    assert "edit" not in status["syncs"]["by_reason"]
    assert status["next_scheduled"]


def test_polling_fallback_still_syncs_edits_and_status_says_so(
    spawn: Spawn, store: Store, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("polled")
    daemon = spawn(watch="polling", interval_seconds=3600, debounce_ms=100).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")
    store.add_message(conv.id, "user", "seen by polling")
    wait_for(lambda: remote_count(remote, "chat_messages") == 1, 10, "the polled edit")
    watching = daemon.status()["daemon"]["watching"]
    assert watching["polling"] is True and "polling" in watching["note"]
    assert "polling" in daemon.cli("status").stdout


def test_sign_in_claims_and_pushes_anonymous_work_and_signed_out_pushes_nothing(
    spawn: Spawn, store: Store, store_path: Path, remote: psycopg.Connection
) -> None:
    drafts = [store.create_conversation(f"draft {i}") for i in range(2)]
    for conv in drafts:
        store.add_message(conv.id, "user", "written while signed out")
    daemon = spawn(interval_seconds=3600, debounce_ms=100).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")
    assert daemon.status()["daemon"]["state"] == "signed out"
    assert remote_count(remote, "chat_sessions") == 0

    assert daemon.cli("sign-in", ALICE, "--email", "alice@example.com").returncode == 0
    wait_for(lambda: remote_count(remote, "chat_messages") == 2, 10, "the claimed drafts")
    owners = remote.execute("SELECT DISTINCT user_id::text FROM chat_sessions").fetchall()
    assert owners == [(ALICE,)]
    assert daemon.syncs()["by_reason"].get("sign-in") == 1
    assert daemon.status()["anonymous_conversations"] == 0

    assert daemon.cli("sign-out").returncode == 0
    wait_for(lambda: daemon.status()["daemon"]["state"] == "signed out", 10, "signed out")
    later = store.create_conversation("after sign-out")
    store.add_message(later.id, "user", "stays local")
    store.add_message(drafts[0].id, "user", "also stays local")
    before = daemon.syncs()["total"]
    wait_for(lambda: daemon.syncs()["total"] > before, 10, "a sync after the edits")
    assert remote_count(remote, "chat_sessions") == 2
    assert remote_count(remote, "chat_messages") == 2
    with sqlite3.connect(store_path) as local:  # local data kept
        assert local.execute("SELECT count(*) FROM messages").fetchone()[0] == 4
