"""Property: after any sequence of writes, syncs, crashes and re-sends, the usage figures on
the remote equal the truth computed from the rows themselves."""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.engine import SyncEngine
from localstore import Store
from tests.support.remote_facts import audited_truth, usage

EXAMPLES = 200 if os.environ.get("CHATSYNC_LONG") else 25
TODAY = datetime.now(UTC).date()
DAYS = [TODAY, TODAY - timedelta(days=1), TODAY - timedelta(days=40)]

index = st.integers(min_value=0, max_value=50)
tokens = st.integers(min_value=0, max_value=5000)
role = st.sampled_from(["user", "assistant", "system"])
model = st.sampled_from([None, "gpt-4o", "claude-3"])
day = st.sampled_from(range(len(DAYS)))

writes = st.lists(
    st.one_of(
        st.tuples(st.just("add_conversation")),
        st.tuples(st.just("add_message"), index, role, tokens, tokens, model, day),
        st.tuples(st.just("set_tokens"), index, tokens, tokens),
        st.tuples(st.just("edit_content"), index),
        st.tuples(st.just("move_day"), index, day),
        st.tuples(st.just("change_role_model"), index, role, model),
        st.tuples(st.just("delete_message"), index),
        st.tuples(st.just("delete_conversation"), index),
    ),
    max_size=12,
)
sync_kind = st.sampled_from(["sync", "sync_and_crash_before_marking", "forget_acknowledgements"])
# Rounds of writes, each ended by a sync (or a crash, or lost acknowledgements), so that
# changes land on rows the remote already has.
rounds = st.lists(st.tuples(writes, sync_kind), min_size=1, max_size=6)


class Crash(BaseException):
    """A kill between the remote commit and the mark: not an error the engine may catch."""


def stamp(d: int, n: int) -> str:
    return f"{DAYS[d].isoformat()}T{n % 24:02d}:00:00.000Z"


def apply(store: Store, op: tuple, n: int) -> None:
    convs = [c.id for c in store.conversations()]
    msgs = [r[0] for r in store.conn.execute("SELECT id FROM messages ORDER BY id")]
    kind = op[0]
    if kind == "add_conversation" or (kind == "add_message" and not convs):
        store.create_conversation(f"c{n}")
    elif kind == "add_message":
        _, i, r, inp, out, m, d = op
        store.add_message(convs[i % len(convs)], r, f"text {n}", input_tokens=inp,
                          output_tokens=out, total_tokens=inp + out, model=m,
                          elapsed_time=out, timestamp=stamp(d, n))
    elif kind == "delete_conversation" and convs:
        store.delete_conversation(convs[op[1] % len(convs)])
    elif msgs and kind in {"set_tokens", "edit_content", "move_day", "change_role_model",
                           "delete_message"}:
        target = msgs[op[1] % len(msgs)]
        if kind == "set_tokens":
            # elapsed_time moves with the output: active_minutes follow every change
            store.update_message(target, input_tokens=op[2], output_tokens=op[3],
                                 total_tokens=op[2] + op[3], elapsed_time=op[3])
        elif kind == "edit_content":
            store.update_message(target, content=f"edited {n}")
        elif kind == "move_day":
            store.update_message(target, timestamp=stamp(op[2], n))
        elif kind == "change_role_model":
            store.update_message(target, role=op[2], model=op[3])
        else:
            store.delete_message(target)


def sync(path: Path, dsn: str, *, crash: bool = False) -> None:
    def crash_after_first_commit(phase: str, kind: str) -> None:
        if crash and phase == "committed":
            raise Crash

    engine = SyncEngine(path, dsn, batch_size=7, on_phase=crash_after_first_commit)
    try:
        report = engine.sync()
        assert report.ok, report.error
    except Crash:
        pass
    finally:
        engine.close()




@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=rounds)
# Always tried, whatever the random draw: every kind of change to a row already counted.
@example(plan=[
    ([("add_message", 0, "assistant", 0, 0, "gpt-4o", 0),
      ("add_message", 0, "user", 10, 0, None, 1)], "sync"),
    ([("set_tokens", 0, 5, 7)], "sync"),
    ([("move_day", 0, 2), ("edit_content", 1)], "sync_and_crash_before_marking"),
    ([("change_role_model", 0, "user", "claude-3")], "forget_acknowledgements"),
    ([("delete_message", 1), ("add_conversation",)], "sync"),
])
def test_usage_equals_the_truth_after_any_sequence(
    plan: list[tuple[list[tuple], str]], remote_dsn: str, remote: psycopg.Connection
) -> None:
    # Each example is a new user with a new store on the same database, so the truth over
    # the whole database must hold after every example.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        user_id = str(uuid.uuid4())
        with Store(path) as store:
            store.sign_in(user_id)
            for r, (ops, then) in enumerate(plan):
                for n, op in enumerate(ops):
                    apply(store, op, r * 100 + n)
                if then == "forget_acknowledgements":
                    store.conn.execute("UPDATE messages SET synced_rev = 0")
                    store.conn.execute("UPDATE conversations SET synced_rev = 0")
                sync(path, remote_dsn, crash=then == "sync_and_crash_before_marking")
            sync(path, remote_dsn)
            assert usage(remote) == audited_truth(remote)
            # and the remote holds exactly the local rows
            local = {r[0]: r[1] for r in store.conn.execute("SELECT id, content FROM messages")}
        user_rows = remote.execute(
            "SELECT m.id, m.content FROM chat_messages m JOIN chat_sessions s "
            "ON s.id = m.session_id WHERE s.user_id = %s", (user_id,)
        ).fetchall()
        assert dict(user_rows) == local
