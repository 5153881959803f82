"""Pull and merge: two devices and the remote converge; out-of-order commits are not skipped."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from daemon.report import Outcome
from localstore import Store
from localstore.inbox import Inbox
from tests.support import ALICE
from tests.support.devices import Device, dirty_count, local_view, remote_view
from tests.support.remote_facts import audited_truth, usage, write_counts


def server_insert_message(remote: psycopg.Connection, conv_id: str, msg_id: str,
                          content: str, role: str = "assistant") -> None:
    """The web app's own server writing a message directly with SQL."""
    remote.execute(
        "INSERT INTO chat_messages (id, session_id, role, content, model, input_tokens, "
        "output_tokens, total_tokens, message_timestamp) "
        "VALUES (%s, %s, %s, %s, 'web-model', 3, 4, 7, now())",
        (msg_id, conv_id, role, content),
    )


def test_rows_written_elsewhere_are_pulled_and_not_dirty(devices, remote) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    conv = laptop.store.create_conversation("from the laptop")
    laptop.store.add_message(conv.id, "user", "hello", input_tokens=5, total_tokens=5)
    assert laptop.sync().conversations.sent == 1
    server_insert_message(remote, conv.id, "msg_from_web", "written by the web app")

    report = desktop.sync()
    assert report.pulled == 3 and report.sent == 0
    assert dirty_count(desktop.store) == 0
    assert {m.content for m in desktop.store.messages(conv.id)} == {
        "hello", "written by the web app"}
    # server-derived statistics are there locally, in their own table
    stats = desktop.store.conn.execute(
        "SELECT message_count, total_tokens, last_model FROM conversations_with_server_stats "
        "WHERE id = ?", (conv.id,)).fetchone()
    assert tuple(stats) == (2, 12, "web-model")

    laptop.sync()
    assert local_view(laptop.store) == local_view(desktop.store) == remote_view(remote)
    assert usage(remote) == audited_truth(remote)


def test_after_a_pull_the_next_sync_sends_nothing_and_writes_nothing(devices, remote) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    conv = laptop.store.create_conversation("c")
    for i in range(20):
        laptop.store.add_message(conv.id, "user", f"m{i}", input_tokens=i)
    laptop.sync()
    assert desktop.sync().pulled == 21
    desktop.engine.disconnect()
    counts, figures = write_counts(remote), usage(remote)

    again = desktop.sync()
    desktop.engine.disconnect()
    assert again.sent == 0 and again.pulled == 0 and again.outcome is Outcome.NOTHING_TO_SEND
    assert dirty_count(desktop.store) == 0
    # the echo of the laptop's own push changes nothing there either
    echo = laptop.sync()
    laptop.engine.disconnect()
    assert echo.sent == 0 and echo.pulled == 0 and dirty_count(laptop.store) == 0
    assert write_counts(remote) == counts and usage(remote) == figures


def test_out_of_order_commits_are_both_pulled(devices, remote, remote_dsn) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    one = laptop.store.create_conversation("one")
    two = laptop.store.create_conversation("two")
    laptop.sync()
    desktop.sync()

    early = psycopg.connect(remote_dsn)  # starts first, commits last
    late = psycopg.connect(remote_dsn)
    try:
        # System messages in two conversations: the two transactions share no row (usage
        # rows, session statistics), so neither waits for the other.
        server_insert_message(early, one.id, "msg_early", "started first", "system")
        server_insert_message(late, two.id, "msg_late", "started second", "system")
        late.commit()
        # The later transaction is committed, the earlier is still open. msg_late is
        # pulled now; a cursor on time or on a sequence would then pass msg_early by.
        assert desktop.sync().pulled == 1
        assert [m.id for m in desktop.store.messages(two.id)] == ["msg_late"]
        assert desktop.store.messages(one.id) == []
        early.commit()
    finally:
        early.close()
        late.close()
    desktop.sync()
    assert [m.id for m in desktop.store.messages(one.id)] == ["msg_early"]
    assert [m.id for m in desktop.store.messages(two.id)] == ["msg_late"]
    assert local_view(desktop.store) == remote_view(remote)


def test_a_delete_on_one_device_disappears_on_the_other(devices, remote) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    keep = laptop.store.create_conversation("keep")
    gone = laptop.store.create_conversation("gone")
    msg = laptop.store.add_message(keep.id, "user", "delete me")
    laptop.store.add_message(gone.id, "user", "goes with its conversation")
    laptop.sync()
    desktop.sync()

    desktop.store.delete_conversation(gone.id)
    desktop.store.delete_message(msg.id)
    assert desktop.sync().deletions.sent == 2
    report = laptop.sync()
    assert report.pulled == 2 and report.sent == 0
    assert [c.id for c in laptop.store.conversations()] == [keep.id]
    assert laptop.store.messages(keep.id) == []
    # the pulled delete left no tombstone: nothing is sent back
    assert dirty_count(laptop.store) == 0
    assert local_view(laptop.store) == local_view(desktop.store) == remote_view(remote)


@pytest.mark.parametrize("first", ["editor", "deleter"])
def test_an_edit_racing_a_delete_resolves_to_the_delete_on_both(
    devices, remote, first: str
) -> None:
    editor, deleter = devices("editor"), devices("deleter")
    conv = editor.store.create_conversation("shared")
    msg = editor.store.add_message(conv.id, "user", "original")
    other = editor.store.add_message(conv.id, "user", "untouched")
    editor.sync()
    deleter.sync()

    editor.store.update_message(msg.id, content="edited")
    editor.store.rename_conversation(conv.id, "renamed")
    deleter.store.delete_message(msg.id)

    order = [editor, deleter] if first == "editor" else [deleter, editor]
    for device in order + order:
        device.sync()
    for device in (editor, deleter):
        assert [m.id for m in device.store.messages(conv.id)] == [other.id]
        assert device.store.conversation(conv.id).title == "renamed"  # not in conflict
        assert dirty_count(device.store) == 0
    assert local_view(editor.store) == local_view(deleter.store) == remote_view(remote)
    # exactly one device saw the conflict, and recorded how it was resolved
    counts = [Inbox(d.store.conn).conflict_counts() for d in (editor, deleter)]
    expected = "deleted-locally" if first == "editor" else "deleted-remotely"
    assert sorted(counts, key=len) == [{}, {expected: 1}]

    # and the whole conversation: deleted on one, a message added on the other
    editor.store.add_message(conv.id, "assistant", "late reply")
    deleter.store.delete_conversation(conv.id)
    for device in order + order:
        device.sync()
    for device in (editor, deleter):
        assert device.store.conversations() == []
    assert local_view(editor.store) == local_view(deleter.store) == remote_view(remote)
    assert usage(remote) == audited_truth(remote)


def test_edit_against_edit_last_to_reach_the_server_wins_everywhere(devices, remote) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    conv = laptop.store.create_conversation("c")
    msg = laptop.store.add_message(conv.id, "assistant", "draft", output_tokens=1)
    laptop.sync()
    desktop.sync()
    laptop.store.update_message(msg.id, content="laptop's", output_tokens=2)
    desktop.store.update_message(msg.id, content="desktop's", output_tokens=3)

    laptop.sync()
    report = desktop.sync()  # sees the laptop's edit, keeps its own and pushes it
    assert report.conflicts == 1 and report.messages.sent == 1
    laptop.sync()
    for device in (laptop, desktop):
        assert device.store.message(msg.id).content == "desktop's"
    assert Inbox(desktop.store.conn).conflict_counts() == {"local-edit-kept": 1}
    logged = desktop.store.conn.execute(
        "SELECT local_version, remote_version FROM conflicts").fetchone()
    assert "desktop's" in logged[0] and "laptop's" in logged[1]
    assert local_view(laptop.store) == local_view(desktop.store) == remote_view(remote)
    assert usage(remote) == audited_truth(remote)


def test_first_sign_in_on_a_new_device_pulls_thousands_with_progress(
    devices, remote, tmp_path: Path, remote_dsn: str
) -> None:
    laptop = devices("laptop")
    for c in range(5):
        conv = laptop.store.create_conversation(f"conversation {c}")
        with laptop.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO messages (id, conversation_id, role, content, output_tokens, "
                "timestamp) VALUES (?, ?, ?, ?, ?, ?)",
                [(f"msg_{c}_{i}", conv.id, "user" if i % 2 else "assistant", f"text {i}",
                  i % 7, f"2026-02-0{1 + i % 9}T08:00:00.{i % 1000:03d}Z")
                 for i in range(1000)],
            )
    laptop.sync()

    path = tmp_path / "new" / "chatsync.db"
    with Store(path) as store:
        store.sign_in(ALICE, "alice@example.com")
    seen: list[tuple[str, int]] = []
    new = Device(path, remote_dsn)
    new.engine.progress = lambda kind, n: seen.append((kind, n))
    try:
        first = new.sync()
        assert first.pulled == 5005 and first.sent == 0
        assert ("pull-total", 5000) in seen
        assert sum(n for kind, n in seen if kind == "pulled") == 5000
        assert local_view(new.store) == remote_view(remote)
        assert dirty_count(new.store) == 0
        second = new.sync()
        assert second.sent == 0 and second.pulled == 0
    finally:
        new.close()


def test_plain_sql_client_edits_of_pulled_rows_are_tracked(devices, remote) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    conv = laptop.store.create_conversation("c")
    msg = laptop.store.add_message(conv.id, "user", "v1")
    laptop.sync()
    desktop.sync()
    c = sqlite3.connect(desktop.path, isolation_level=None)
    c.execute("UPDATE messages SET content = 'v2 from sql' WHERE id = ?", (msg.id,))
    c.close()
    assert desktop.sync().messages.sent == 1
    laptop.sync()
    assert laptop.store.message(msg.id).content == "v2 from sql"
    assert local_view(laptop.store) == local_view(desktop.store) == remote_view(remote)


def test_a_pull_skips_the_echo_of_its_own_push_but_others_see_it(
    devices, remote_dsn: str
) -> None:
    from remote.connect import UserSession
    from remote.connect import connect as connect_remote
    from remote.pull import read_changes

    laptop = devices("laptop")
    laptop.sync()  # first pull: the cursor now exists
    conv = laptop.store.create_conversation("big push")
    for i in range(300):
        laptop.store.add_message(conv.id, "user", f"m{i}", id=f"msg_echo_{i}")
    assert laptop.sync().messages.sent == 300
    cursor = Inbox(laptop.store.conn).cursor(ALICE)

    with connect_remote(remote_dsn) as conn:
        own = UserSession(conn, ALICE, origin=laptop.engine.origin)
        with read_changes(own, cursor) as changes:
            assert changes is not None  # the conversation's statistics changed
            assert changes.message_count == 0  # counted by the probe, in its snapshot
            assert [c["id"] for c in changes.conversations] == [conv.id]
            assert list(changes.messages) == []  # and so no message query at all
        other = UserSession(conn, ALICE)  # another engine, another origin
        with read_changes(other, cursor) as changes:
            assert changes is not None and changes.message_count == 300
            assert sum(len(page) for page in changes.messages) == 300

    report = laptop.sync()
    assert report.sent == 0 and report.pulled == 0
    desktop = devices("desktop")
    assert desktop.sync().pulled == 301
    assert local_view(desktop.store) == local_view(laptop.store)


def test_the_origin_names_the_store_file_so_a_copy_gets_another(tmp_path: Path) -> None:
    import shutil

    from daemon.engine import store_origin

    path = tmp_path / "a" / "chatsync.db"
    Store(path).close()
    copy = tmp_path / "b" / "chatsync.db"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert store_origin(path) == store_origin(path)
    assert store_origin(copy) != store_origin(path)


@pytest.mark.parametrize("pulled", [False, True], ids=["pushed-here", "pulled-here"])
def test_an_edit_of_a_row_deleted_remotely_after_our_pull_is_not_revived(
    devices, remote: psycopg.Connection, pulled: bool
) -> None:
    laptop = devices("laptop")
    conv = laptop.store.create_conversation("race")
    laptop.store.add_message(conv.id, "user", "v1", id="msg_race", input_tokens=10,
                             total_tokens=10)
    laptop.sync()
    device = laptop
    if pulled:  # the row reached this device by a pull rather than by its own push
        device = devices("desktop")
        device.sync()
    counted = usage(remote)
    device.store.update_message("msg_race", content="v2, edited here")

    def delete_on_the_server(phase: str, kind: str) -> None:
        # between this sync's pull and its push: another device deletes the message
        if phase == "read" and kind == "message":
            remote.execute("DELETE FROM chat_messages WHERE id = 'msg_race'")

    device.engine.on_phase = delete_on_the_server
    report = device.sync()
    device.engine.on_phase = lambda phase, kind: None
    assert report.messages.sent == 1 and report.messages.written == 0
    assert remote.execute("SELECT count(*) FROM chat_messages WHERE id = 'msg_race'"
                          ).fetchone() == (0,)
    assert usage(remote) == counted == audited_truth(remote)

    device.sync()  # the pull brings the delete: deletion wins over the local edit
    assert [m.id for m in device.store.messages(conv.id)] == []
    assert dirty_count(device.store) == 0
    assert device.sync().sent == 0
