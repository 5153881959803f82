"""The local store: tracking by triggers for every writer, validation, schema versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from localstore import InvalidRow, NotFound, SchemaTooNew, Store, connect
from localstore.connection import SCHEMA_VERSION
from localstore.outbox import Outbox
from tests.support import ALICE


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, as a non-Python client would have."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def revs(conn: sqlite3.Connection, table: str, row_id: str) -> tuple[int, int, int]:
    return conn.execute(
        f"SELECT rev, synced_rev, dirty FROM {table} WHERE id = ?", (row_id,)
    ).fetchone()


def test_plain_sql_client_can_write_with_only_required_columns(store: Store) -> None:
    c = raw(store.path)
    c.execute("INSERT INTO auth_session (user_id, email) VALUES (?, 'a@example.com')", (ALICE,))
    c.execute("INSERT INTO conversations (id) VALUES ('conv_1')")
    c.execute(
        "INSERT INTO messages (id, conversation_id, role, content, timestamp) "
        "VALUES ('msg_1', 'conv_1', 'user', 'hi', '2026-01-02T03:04:05.000Z')"
    )
    m = store.message("msg_1")
    assert (m.content_type, m.total_tokens, m.error, m.dirty) == ("text", 0, False, True)
    assert store.conversation("conv_1").title == "New Chat"
    assert store.signed_in().user_id == ALICE


def test_plain_sql_insert_update_delete_are_tracked(store: Store) -> None:
    c = raw(store.path)
    c.execute("INSERT INTO conversations (id, user_id) VALUES ('conv_1', ?)", (ALICE,))
    c.execute("INSERT INTO messages (id, conversation_id, role, content) "
              "VALUES ('msg_1', 'conv_1', 'user', 'hi')")
    rev, synced, dirty = revs(c, "messages", "msg_1")
    assert rev > 0 and synced == 0 and dirty == 1

    # pretend the remote acknowledged it
    Outbox(store.conn).mark_synced("message", [("msg_1", rev)])
    assert revs(c, "messages", "msg_1") == (rev, rev, 0)

    c.execute("UPDATE messages SET content = 'hello' WHERE id = 'msg_1'")
    new_rev, synced, dirty = revs(c, "messages", "msg_1")
    assert new_rev > rev and synced == rev and dirty == 1

    c.execute("DELETE FROM messages WHERE id = 'msg_1'")
    tomb = c.execute("SELECT kind, id, user_id FROM tombstones").fetchall()
    assert tomb == [("message", "msg_1", ALICE)]


def test_rewriting_identical_values_is_not_a_change(store: Store) -> None:
    c = raw(store.path)
    c.execute("INSERT INTO conversations (id, user_id, title) VALUES ('conv_1', ?, 't')", (ALICE,))
    rev = revs(c, "conversations", "conv_1")[0]
    Outbox(store.conn).mark_synced("conversation", [("conv_1", rev)])
    counter = Outbox(store.conn).last_rev()
    c.execute("UPDATE conversations SET title = 't', user_id = ? WHERE id = 'conv_1'", (ALICE,))
    c.execute("UPDATE conversations SET title = title")
    c.execute("INSERT INTO conversations (id, user_id, title) VALUES ('conv_1', ?, 't') "
              "ON CONFLICT (id) DO UPDATE SET title = excluded.title", (ALICE,))
    assert revs(c, "conversations", "conv_1") == (rev, rev, 0)
    assert Outbox(store.conn).last_rev() == counter


def test_rows_written_by_the_sync_engine_are_not_dirty(store: Store) -> None:
    c = raw(store.path)
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE sync_meta SET applying_remote = 1")
    c.execute("INSERT INTO conversations (id, user_id) VALUES ('conv_r', ?)", (ALICE,))
    c.execute("INSERT INTO messages (id, conversation_id, role, content) "
              "VALUES ('msg_r', 'conv_r', 'assistant', 'from another device')")
    c.execute("UPDATE sync_meta SET applying_remote = 0")
    c.execute("COMMIT")
    assert revs(c, "messages", "msg_r")[2] == 0
    assert revs(c, "conversations", "conv_r")[2] == 0
    assert Outbox(store.conn).pending(ALICE).total == 0


def test_compare_and_set_keeps_a_newer_edit_dirty(store: Store) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("t")
    m = store.add_message(conv.id, "user", "v1")
    pushed_rev = revs(store.conn, "messages", m.id)[0]
    store.update_message(m.id, content="v2")  # lands while v1 is "in flight"
    marked = Outbox(store.conn).mark_synced("message", [(m.id, pushed_rev)])
    assert marked == 0
    assert store.message(m.id).dirty


def test_deleting_a_conversation_leaves_one_tombstone_and_none_for_anonymous(store: Store) -> None:
    anon = store.create_conversation("before sign-in")
    store.add_message(anon.id, "user", "x")
    store.delete_conversation(anon.id)
    assert store.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 0

    store.sign_in(ALICE)
    conv = store.create_conversation("t")
    for i in range(3):
        store.add_message(conv.id, "user", f"m{i}")
    store.delete_conversation(conv.id)
    rows = store.conn.execute("SELECT kind, id FROM tombstones").fetchall()
    assert [tuple(r) for r in rows] == [("conversation", conv.id)]
    assert store.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_reinserting_a_deleted_id_drops_its_tombstone(store: Store) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("t", id="conv_x")
    store.delete_conversation(conv.id)
    store.create_conversation("t again", id="conv_x")
    assert store.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 0


def test_finding_dirty_rows_uses_the_partial_index(store: Store) -> None:
    from localstore.outbox import PENDING_CONVERSATIONS, PENDING_MESSAGES

    params = {"user_id": ALICE, "after": 0, "upto": 10, "limit": 10}
    for sql, index in ((PENDING_MESSAGES, "messages_pending"),
                       (PENDING_CONVERSATIONS, "conversations_pending")):
        steps = [r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        assert any(index in s for s in steps), steps
        # the outer loop walks the pending index; everything else is a keyed search
        assert all(index in s or not s.startswith("SCAN") for s in steps), steps


def test_the_orphan_check_walks_only_the_dirty_messages(store: Store) -> None:
    # Every sync runs it (Outbox.quarantine_orphans): through the partial index of dirty
    # messages, never a scan of the history.
    from localstore.outbox import (
        ORPHAN_PREFIX,
        ORPHAN_SUFFIX,
        ORPHANS_TO_SETTLE,
        QUARANTINE_ORPHANS,
    )

    params = {"prefix": ORPHAN_PREFIX, "suffix": ORPHAN_SUFFIX}
    for sql in (ORPHANS_TO_SETTLE, QUARANTINE_ORPHANS):
        steps = [r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        scans = [s for s in steps if s.startswith("SCAN") and "CONSTANT ROW" not in s]
        assert scans and all("messages_pending" in s for s in scans), steps


@pytest.mark.parametrize(
    ("sql", "field"),
    [
        ("INSERT INTO messages (id, conversation_id, role, content) "
         "VALUES ('m', 'c', 'robot', 'x')", "messages.role"),
        ("INSERT INTO messages (id, conversation_id, role, content, timestamp) "
         "VALUES ('m', 'c', 'user', 'x', 'yesterday-ish')", "messages.timestamp"),
        ("INSERT INTO messages (id, conversation_id, role, content, timestamp) "
         "VALUES ('m', 'c', 'user', 'x', '2026-02-31T00:00:00Z')", "messages.timestamp"),
        ("INSERT INTO messages (id, conversation_id, role, content, total_tokens) "
         "VALUES ('m', 'c', 'user', 'x', -5)", "messages.total_tokens"),
        ("INSERT INTO messages (id, conversation_id, role, content, input_tokens) "
         "VALUES ('m', 'c', 'user', 'x', 2.5)", "messages.input_tokens"),
        ("INSERT INTO messages (id, conversation_id, role, content, content_type) "
         "VALUES ('m', 'c', 'user', 'x', 'html')", "messages.content_type"),
        ("UPDATE conversations SET title = printf('%.300c', 'x')", "conversations.title"),
        ("INSERT INTO conversations (id, created_at) VALUES ('c2', 'not a time')",
         "conversations.created_at"),
        ("INSERT INTO auth_session (user_id) VALUES ('alice')", "auth_session.user_id"),
    ],
)
def test_bad_values_are_refused_naming_the_field(store: Store, sql: str, field: str) -> None:
    c = raw(store.path)
    c.execute("INSERT INTO conversations (id) VALUES ('c')")
    before = c.execute("SELECT last_rev FROM sync_meta").fetchone()
    with pytest.raises(sqlite3.IntegrityError, match=field.replace(".", r"\.")):
        c.execute(sql)
    assert c.execute("SELECT last_rev FROM sync_meta").fetchone() == before
    assert c.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1


def test_python_api_reports_bad_values_as_invalid_row(store: Store) -> None:
    conv = store.create_conversation("t")
    with pytest.raises(InvalidRow, match=r"messages\.role"):
        store.add_message(conv.id, "robot", "x")
    with pytest.raises(InvalidRow, match=r"messages\.output_tokens"):
        store.add_message(conv.id, "assistant", "x", output_tokens=-1)
    with pytest.raises(InvalidRow, match=r"conversations\.title"):
        store.rename_conversation(conv.id, "x" * 256)
    with pytest.raises(InvalidRow, match="unknown message field"):
        store.add_message(conv.id, "user", "x", colour="red")
    with pytest.raises(NotFound):
        store.add_message("conv_missing", "user", "x")
    assert store.messages(conv.id) == []
    assert store.conversation(conv.id).title == "t"


def test_store_is_versioned_and_refuses_a_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade chatsync"):
        connect(path)


def test_opening_an_older_file_migrates_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # version 0: an empty file
    with Store(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        store.create_conversation("works")


def test_claiming_anonymous_conversations(store: Store) -> None:
    a = store.create_conversation("made signed out")
    assert a.user_id is None
    store.sign_in(ALICE)
    assert store.claim_anonymous(ALICE) == 1
    assert store.conversation(a.id).user_id == ALICE
    assert Outbox(store.conn).pending(ALICE).conversations == 1


def test_pending_counts_use_the_partial_index(store: Store) -> None:
    from localstore.outbox import PENDING_COUNTS

    steps = [
        r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + PENDING_COUNTS, {"user_id": ALICE})
    ]
    scans = [s for s in steps if s.startswith(("SCAN m", "SCAN conversations"))]
    assert scans and all("_pending" in s for s in scans), steps


def test_user_ids_are_kept_lowercase_so_they_match_pulled_rows(store: Store) -> None:
    assert store.sign_in(ALICE.upper()).user_id == ALICE
    c = raw(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="lowercase UUID"):
        c.execute("UPDATE auth_session SET user_id = ?", (ALICE.upper(),))
    with pytest.raises(sqlite3.IntegrityError, match=r"conversations\.user_id must be"):
        c.execute("INSERT INTO conversations (id, user_id) VALUES ('c', ?)", (ALICE.upper(),))
