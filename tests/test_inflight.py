"""Pushes in flight record each row's pushed version only when it is needed (schema 5).

A row still at its pushed rev is its own version; the store's triggers copy the old values
into the in-flight entry before a client updates, deletes or replaces such a row. These
tests kill the sync between the remote COMMIT and the local mark after such a change, so
that only the recorded entry can tell the next sync what was pushed: the pushed version
must become the row's merge base, and another device's later edit a recorded conflict.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from daemon.engine import SyncEngine
from tests.support.devices import Device, conflicts, dirty_count, local_view, remote_view

CONTENT = "SELECT content FROM chat_messages WHERE id = %s"
TITLE = "SELECT title FROM chat_sessions WHERE id = %s"


class Killed(BaseException):
    """A kill -9 at a phase: nothing in the engine catches it and nothing after it runs."""


def kill_after(device: Device, remote_dsn: str, kind: str,
               at_sent: Callable[[sqlite3.Connection], None]) -> list[Any]:
    """Sync *device*; at "sent" of *kind* a client runs *at_sent*; killed at "committed".

    Returns the in-flight entries as they were at "sent", before the client's change.
    """
    seen: list[Any] = []

    def hook(phase: str, at_kind: str) -> None:
        if at_kind != kind:
            return
        if phase == "sent":
            other = sqlite3.connect(device.path, isolation_level=None)  # a client
            try:
                seen.extend(other.execute(
                    "SELECT kind, id, version FROM push_inflight ORDER BY kind, id"))
                at_sent(other)
            finally:
                other.close()
        if phase == "committed":
            raise Killed

    device.engine.close()
    device.engine = SyncEngine(device.path, remote_dsn, on_phase=hook)
    with pytest.raises(Killed):
        device.engine.sync()
    device.engine.close()
    device.engine = SyncEngine(device.path, remote_dsn)  # restarted
    return seen


def base_of(device: Device, kind: str, row_id: str) -> dict[str, Any] | None:
    row = device.store.conn.execute(
        "SELECT version FROM sync_base WHERE kind = ? AND id = ?", (kind, row_id)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def test_unchanged_rows_in_flight_are_recorded_without_a_copy_of_their_columns(
    remote_dsn: str, devices: Any,
) -> None:
    a = devices("a")
    conv = a.store.create_conversation("title")
    a.store.add_message(conv.id, "user", "x" * 10_000)
    seen = kill_after(a, remote_dsn, "message", lambda conn: None)
    assert [(k, v) for k, _, v in seen] == [("message", None)]
    a.sync()  # the batch committed: settled as it would have been
    assert dirty_count(a.store) == 0
    assert a.store.conn.execute("SELECT count(*) FROM push_inflight").fetchone()[0] == 0


@pytest.mark.parametrize("how", ["update", "replace"])
def test_a_message_changed_while_in_flight_keeps_the_pushed_version_across_a_crash(
    how: str, remote_dsn: str, remote: psycopg.Connection, devices: Any,
) -> None:
    a, b = devices("a"), devices("b")
    conv = a.store.create_conversation("title 1")
    msg = a.store.add_message(conv.id, "user", "content 1")

    def change(conn: sqlite3.Connection) -> None:
        if how == "update":
            conn.execute("UPDATE messages SET content = 'A, during the push' WHERE id = ?",
                         (msg.id,))
        else:  # a client writing whole rows: the old row goes without a delete trigger
            row = dict(zip(("id", "conversation_id", "role", "timestamp"), conn.execute(
                "SELECT id, conversation_id, role, timestamp FROM messages WHERE id = ?",
                (msg.id,)).fetchone(), strict=True))
            conn.execute(
                "INSERT OR REPLACE INTO messages (id, conversation_id, role, content, timestamp)"
                " VALUES (:id, :conversation_id, :role, 'A, during the push', :timestamp)", row)

    kill_after(a, remote_dsn, "message", change)
    assert remote.execute(CONTENT, (msg.id,)).fetchone() == ("content 1",)

    b.sync()
    b.store.update_message(msg.id, content="B's edit")
    b.sync()
    # A restarts: the committed batch is resolved first, its row edited meanwhile keeps
    # "content 1" as its base, so B's edit is told from the echo of A's own push.
    a.sync()
    b.sync()
    recorded = [c for c in conflicts(a) if c["id"] == msg.id]
    assert len(recorded) == 1, conflicts(a)
    assert recorded[0]["resolution"] == "local-edit-kept"
    assert json.loads(recorded[0]["remote_version"])["content"] == "B's edit"
    assert json.loads(recorded[0]["local_version"])["content"] == "A, during the push"
    assert remote.execute(CONTENT, (msg.id,)).fetchone() == ("A, during the push",)
    assert local_view(a.store) == local_view(b.store) == remote_view(remote)
    assert dirty_count(a.store) == dirty_count(b.store) == 0


@pytest.mark.parametrize("kind", ["conversation", "message"])
def test_the_recorded_version_is_the_pushed_one_whatever_the_client_does_next(
    kind: str, remote_dsn: str, devices: Any,
) -> None:
    # Resolved as committed: the row edited meanwhile keeps the pushed version as its base.
    a = devices("a")
    conv = a.store.create_conversation("title 1")
    msg = a.store.add_message(conv.id, "user", "content 1")
    table, column, row_id = (("conversations", "title", conv.id) if kind == "conversation"
                             else ("messages", "content", msg.id))

    def edit_twice(conn: sqlite3.Connection) -> None:
        conn.execute(f"UPDATE {table} SET {column} = 'second' WHERE id = ?", (row_id,))
        conn.execute(f"UPDATE {table} SET {column} = 'third' WHERE id = ?", (row_id,))

    kill_after(a, remote_dsn, kind, edit_twice)
    entry = a.store.conn.execute(
        "SELECT version FROM push_inflight WHERE kind = ? AND id = ?", (kind, row_id)).fetchone()
    assert json.loads(entry[0])[column] == ("title 1" if kind == "conversation" else "content 1")

    stop_before_push = SyncEngine(a.path, remote_dsn, should_stop=lambda: True)
    try:
        assert stop_before_push.sync().ok  # resolves, pulls, pushes nothing
    finally:
        stop_before_push.close()
    base = base_of(a, kind, row_id)
    assert base is not None and base[column] == (
        "title 1" if kind == "conversation" else "content 1")
    assert a.store.conn.execute("SELECT count(*) FROM push_inflight").fetchone()[0] == 0


def test_a_message_deleted_while_in_flight_keeps_the_pushed_version_as_its_base(
    remote_dsn: str, devices: Any,
) -> None:
    a = devices("a")
    conv = a.store.create_conversation("title 1")
    msg = a.store.add_message(conv.id, "user", "content 1")
    kill_after(a, remote_dsn, "message",
               lambda conn: conn.execute("DELETE FROM messages WHERE id = ?", (msg.id,)))
    entry = a.store.conn.execute(
        "SELECT version FROM push_inflight WHERE kind = 'message' AND id = ?",
        (msg.id,)).fetchone()
    assert json.loads(entry[0])["content"] == "content 1"
    stop_before_push = SyncEngine(a.path, remote_dsn, should_stop=lambda: True)
    try:
        assert stop_before_push.sync().ok
    finally:
        stop_before_push.close()
    base = base_of(a, "message", msg.id)
    assert base is not None and base["content"] == "content 1"


def test_a_row_the_remote_refuses_is_not_in_flight_at_the_commit_and_a_crash_keeps_it_out(
    remote_dsn: str, devices: Any,
) -> None:
    # The direct transport records a batch in flight while PostgreSQL runs its upsert, so
    # every staged row is recorded; a row the upsert refuses leaves the record before the
    # remote COMMIT. Killed after it, the next sync must mark only what the remote took:
    # the refused row is quarantined by nobody (the mark never ran) but stays dirty.
    a = devices("a")
    conv = a.store.create_conversation("title")
    a.store.add_message(conv.id, "user", "fine", id="msg_fine")
    c = sqlite3.connect(a.path, isolation_level=None)
    c.execute("INSERT INTO messages (id, conversation_id, role, content, timestamp) "
              "VALUES ('msg_year0', ?, 'user', 'x', '0000-01-01T00:00:00Z')", (conv.id,))
    c.close()
    seen = kill_after(a, remote_dsn, "message", lambda conn: None)
    assert [(k, i) for k, i, _ in seen] == [("message", "msg_fine")]
    report = a.engine.sync()
    assert report.ok
    dirty = {r[0] for r in a.store.conn.execute(
        "SELECT id FROM messages WHERE rev > synced_rev")}
    assert dirty == {"msg_year0"}  # refused again by this sync's push, and quarantined
    quarantined = {r[0] for r in a.store.conn.execute("SELECT id FROM quarantine")}
    assert quarantined == {"msg_year0"}
    assert a.store.conn.execute("SELECT count(*) FROM push_inflight").fetchone()[0] == 0


def test_the_checkpoint_runs_after_the_sync_in_a_thread_of_its_own(
    remote_dsn: str, devices: Any,
) -> None:
    from daemon.background import BACKSTOP_CHECKPOINT_PAGES

    a = devices("a")
    conv = a.store.create_conversation("title")
    for i in range(50):
        a.store.add_message(conv.id, "user", "y" * 5000, id=f"msg_{i}")
    kicks: list[int] = []
    checkpointer = a.engine._checkpointer
    kick = checkpointer.kick
    checkpointer.kick = lambda: (kicks.append(1), kick())[1]  # type: ignore[method-assign]
    assert a.sync().ok
    # the engine's own commits leave the WAL alone (up to the backstop) ...
    assert a.engine.local.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == \
        BACKSTOP_CHECKPOINT_PAGES
    assert len(kicks) >= 2  # after the batch's marking and after the sync
    checkpointer.close()  # waits for the checkpoint asked for
    # ... and the thread copied it into the database file: read without the WAL, the file
    # has every message marked synced.
    main_file = sqlite3.connect(f"file:{a.path}?immutable=1", uri=True)
    try:
        assert main_file.execute(
            "SELECT count(*) FROM messages WHERE rev = synced_rev").fetchone()[0] == 50
    finally:
        main_file.close()
