"""Two devices and the web app's server writing, syncs in any order: everything converges.

Hypothesis draws sequences of writes on two local stores (two devices of one user) and on
the remote directly (the web app's server inserting and completing messages with SQL),
interleaved with syncs of either device in random order. After both devices sync a few
more times, both stores equal each other and the remote, nothing is left dirty, and the
usage analytics equal the truth computed from every row that ever reached the remote.

`CHATSYNC_LONG=1` runs many more examples (the default keeps to about a minute).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localstore import NotFound
from tests.support import ALICE, pg
from tests.support.devices import Device, dirty_count, local_view, remote_view
from tests.support.remote_facts import audited_truth, usage

LONG = os.environ.get("CHATSYNC_LONG") == "1"

device = st.sampled_from([0, 1])
pick = st.integers(min_value=0, max_value=50)
tokens = st.integers(min_value=0, max_value=500)
role = st.sampled_from(["user", "assistant", "system"])
text = st.text(alphabet="abcxyz é", min_size=1, max_size=12)

operation = st.one_of(
    st.tuples(st.just("create"), device, text),
    st.tuples(st.just("add"), device, pick, role, tokens),
    st.tuples(st.just("edit"), device, pick, text, tokens),
    st.tuples(st.just("rename"), device, pick, text),
    st.tuples(st.just("delete_message"), device, pick),
    st.tuples(st.just("delete_conversation"), device, pick),
    st.tuples(st.just("server_add"), pick, role, tokens),
    st.tuples(st.just("server_complete"), pick, tokens),
    st.tuples(st.just("sync"), device),
    st.tuples(st.just("sync"), device),
)


def _choose(items: list[Any], n: int) -> Any | None:
    return items[n % len(items)] if items else None


def _apply(op: tuple[Any, ...], devices: list[Device], remote: psycopg.Connection) -> None:
    kind = op[0]
    if kind == "sync":
        devices[op[1]].sync()
        return
    if kind == "server_add":
        session = _choose([r[0] for r in remote.execute(
            "SELECT id FROM chat_sessions ORDER BY id")], op[1])
        if session is not None:
            remote.execute(
                "INSERT INTO chat_messages (id, session_id, role, content, model, "
                "input_tokens, output_tokens, total_tokens, is_streaming) "
                "VALUES ('msg_web_' || gen_random_uuid(), %s, %s, '', 'web', %s, 0, %s, true)",
                (session, op[2], op[3], op[3]),
            )
        return
    if kind == "server_complete":
        message = _choose([r[0] for r in remote.execute(
            "SELECT id FROM chat_messages ORDER BY id")], op[1])
        if message is not None:
            remote.execute(
                "UPDATE chat_messages SET content = content || ' (done)', output_tokens = %s, "
                "total_tokens = coalesce(input_tokens, 0) + %s, is_streaming = false "
                "WHERE id = %s",
                (op[2], op[2], message),
            )
        return
    store = devices[op[1]].store
    conversations = [c.id for c in store.conversations()]
    messages = [r[0] for r in store.conn.execute("SELECT id FROM messages ORDER BY id")]
    try:
        if kind == "create":
            store.create_conversation(op[2])
        elif kind == "add" and conversations:
            store.add_message(_choose(conversations, op[2]), op[3], "hi", model="m",
                              input_tokens=op[4], total_tokens=op[4])
        elif kind == "edit" and messages:
            store.update_message(_choose(messages, op[2]), content=op[3],
                                 output_tokens=op[4])
        elif kind == "rename" and conversations:
            store.rename_conversation(_choose(conversations, op[2]), op[3])
        elif kind == "delete_message" and messages:
            store.delete_message(_choose(messages, op[2]))
        elif kind == "delete_conversation" and conversations:
            store.delete_conversation(_choose(conversations, op[2]))
    except NotFound:
        pass


@settings(
    max_examples=400 if LONG else 60, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=40))
def test_two_devices_and_the_server_converge(
    admin_dsn: str, full_template: str, ops: list[tuple[Any, ...]]
) -> None:
    name = pg.create_database(admin_dsn, "chatsync_prop", template=full_template)
    dsn = pg.dsn_for(admin_dsn, name)
    folder = Path(tempfile.mkdtemp(prefix="chatsync-pull-prop-"))
    devices: list[Device] = []
    try:
        for n in range(2):
            d = Device(folder / f"device{n}" / "chatsync.db", dsn, batch_size=7)
            d.store.sign_in(ALICE, "alice@example.com")
            devices.append(d)
        with psycopg.connect(dsn, autocommit=True) as remote:
            for op in ops:
                _apply(op, devices, remote)
            for _ in range(3):
                for d in devices:
                    d.sync()
            for d in devices:
                assert dirty_count(d.store) == 0
                assert d.store.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
            assert local_view(devices[0].store) == local_view(devices[1].store)
            assert local_view(devices[0].store) == remote_view(remote)
            assert usage(remote) == audited_truth(remote)
            # and a further sync of either device sends and changes nothing
            for d in devices:
                report = d.sync()
                assert report.sent == 0 and report.pulled == 0
    finally:
        for d in devices:
            d.close()
        shutil.rmtree(folder, ignore_errors=True)
        pg.drop_database(admin_dsn, name)
