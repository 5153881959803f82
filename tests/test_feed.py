"""The change feed across users and conversations (issue 9, item 10).

Entries are the user's own: a conversation id reused by another user, a row moved to
another owner, and a message moved to a conversation that is then deleted all reach every
device of the user who had the row.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from tests.support import ALICE, BOB
from tests.support.devices import Device, dirty_count, local_view, remote_view

MakeDevice = Callable[[str, str], Device]




def ids(device: Device, table: str) -> set[str]:
    return {r[0] for r in device.store.conn.execute(f"SELECT id FROM {table}")}


def alices_view(remote: psycopg.Connection) -> dict[str, dict]:
    view = remote_view(remote)
    mine = {k: v for k, v in view["conversations"].items() if v[0] == ALICE}
    msgs = {k: v for k, v in view["messages"].items() if v[0] in mine}
    return {"conversations": mine, "messages": msgs}


def test_a_delete_reaches_alices_devices_when_bob_reuses_the_id(
    devices: MakeDevice, remote: psycopg.Connection
) -> None:
    laptop, desktop, bobs = (devices("laptop", ALICE), devices("desktop", ALICE),
                             devices("bobs", BOB))
    conv = laptop.store.create_conversation("shared id", id="conv_X")
    laptop.store.add_message(conv.id, "user", "hello", id="msg_X")
    laptop.sync()
    desktop.sync()
    assert "conv_X" in ids(desktop, "conversations")

    laptop.store.delete_conversation("conv_X")
    laptop.sync()
    theirs = bobs.store.create_conversation("Bob's own", id="conv_X")
    bobs.store.add_message(theirs.id, "user", "bob's", id="msg_X")
    bobs.sync()

    desktop.store.update_message("msg_X", content="edited while the delete was unknown")
    desktop.sync()
    assert "conv_X" not in ids(desktop, "conversations")
    assert "msg_X" not in ids(desktop, "messages")
    assert dirty_count(desktop.store) == 0
    assert local_view(desktop.store) == local_view(laptop.store)
    # and Bob's entry is his own: his conversation is intact
    assert remote.execute("SELECT user_id::text FROM chat_sessions WHERE id = 'conv_X'"
                          ).fetchone()[0] == BOB


def test_a_message_moved_then_deleted_with_its_new_conversation(
    devices: MakeDevice, remote: psycopg.Connection
) -> None:
    one, two = devices("one", ALICE), devices("two", ALICE)
    c1 = one.store.create_conversation("C1")
    c2 = one.store.create_conversation("C2")
    m = one.store.add_message(c1.id, "user", "moving")
    one.sync()
    two.sync()
    assert m.id in ids(two, "messages")

    one.store.conn.execute("UPDATE messages SET conversation_id = ? WHERE id = ?", (c2.id, m.id))
    one.sync()
    one.store.delete_conversation(c2.id)
    one.sync()

    two.store.update_message(m.id, content="edited in C1")
    two.sync()
    assert m.id not in ids(two, "messages")
    assert dirty_count(two.store) == 0
    assert local_view(two.store) == local_view(one.store) == remote_view(remote)


def test_a_conversation_given_to_another_user(
    devices: MakeDevice, remote: psycopg.Connection
) -> None:
    """The web server moves a conversation from Alice to Bob: Alice's devices drop it with
    its messages, Bob's receive it with its messages."""
    alices, bobs = devices("alices", ALICE), devices("bobs", BOB)
    conv = alices.store.create_conversation("moving")
    alices.store.add_message(conv.id, "user", "one")
    alices.store.add_message(conv.id, "assistant", "two")
    alices.sync()
    remote.execute("INSERT INTO profiles (id, email) VALUES (%s, 'bob@example.com')", (BOB,))
    remote.execute("UPDATE chat_sessions SET user_id = %s WHERE id = %s", (BOB, conv.id))

    alices.sync()
    bobs.sync()
    assert conv.id not in ids(alices, "conversations")
    assert not ids(alices, "messages")
    assert conv.id in ids(bobs, "conversations")
    assert len(ids(bobs, "messages")) == 2
    assert local_view(alices.store) == alices_view(remote)


def test_feed_entries_are_per_user(remote: psycopg.Connection) -> None:
    key = remote.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index AS i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = 'chatsync_feed.changes'::regclass AND i.indisprimary"
    ).fetchone()[0]
    assert key == ["user_id", "kind", "id"]


def test_a_message_moved_to_another_users_conversation(
    devices: MakeDevice, remote: psycopg.Connection
) -> None:
    alices, bobs = devices("alices", ALICE), devices("bobs", BOB)
    conv = alices.store.create_conversation("Alice's")
    m = alices.store.add_message(conv.id, "user", "moving away")
    alices.sync()
    theirs = bobs.store.create_conversation("Bob's")
    bobs.sync()
    remote.execute("UPDATE chat_messages SET session_id = %s WHERE id = %s", (theirs.id, m.id))

    alices.sync()
    bobs.sync()
    assert m.id not in ids(alices, "messages")
    assert m.id in ids(bobs, "messages")
    assert dirty_count(alices.store) == dirty_count(bobs.store) == 0
