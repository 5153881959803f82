"""Hostile and malformed rows written with plain SQL by a client that turned the store's
checks off (`PRAGMA ignore_check_constraints = ON`, `PRAGMA foreign_keys = OFF`): NUL
characters, bytes that are not UTF-8 (lone surrogates, stray continuation bytes), BLOBs,
timestamps far out of range or that PostgreSQL would read as something else, negative,
fractional and huge token counts, unknown roles, messages whose conversation does not
exist, ids full of quotes and separators, another user's ids; and a 10 MB message.

Each row either reaches the remote with exactly its local values or is quarantined with a
reason; the well-formed rows beside them sync; the sync never fails as a whole and usage
equals the truth. A message whose conversation does not exist locally cannot be attributed
to anyone: it is never sent and stays local (it is not the signed-in user's data), quarantined
with a reason naming the missing conversation so that status shows it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.engine import SyncEngine
from localstore import Store
from tests.support.remote_facts import audited_truth, usage
from tests.support.stores import LONG, plain

EXAMPLES = 300 if LONG else 25
BOB = "bbbbbbbb-0000-4000-8000-0000000000b0"
BOB_CONV = "conv_bob_private"
BOB_MSG = "msg_bob_private"

HOSTILE_INSERT_CONVERSATION = """
INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
"""
HOSTILE_INSERT_MESSAGE = """
INSERT INTO messages (id, conversation_id, role, content, model, input_tokens, output_tokens,
    total_tokens, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Raw bytes stored as TEXT: SQLite keeps them as they are, valid UTF-8 or not.
HOSTILE_INSERT_RAW_CONTENT = """
INSERT INTO messages (id, conversation_id, role, content, timestamp)
VALUES (?, ?, 'user', CAST(? AS TEXT), '2026-03-01T10:00:00Z')
"""
LOCAL_MESSAGE = """
SELECT id, conversation_id, role, content, model, input_tokens, output_tokens, timestamp
FROM messages WHERE id = ?
"""
REMOTE_MESSAGE = """
SELECT m.id, m.session_id, m.role, m.content, m.model, m.input_tokens, m.output_tokens,
       m.message_timestamp, s.user_id::text
FROM chat_messages AS m JOIN chat_sessions AS s ON s.id = m.session_id WHERE m.id = %s
"""
QUARANTINED = "SELECT id, reason FROM quarantine WHERE kind = ?"
BOB_ROWS = """
SELECT s.id, s.user_id::text, s.title, m.id, m.content, m.input_tokens
FROM chat_sessions AS s LEFT JOIN chat_messages AS m ON m.session_id = s.id
WHERE s.user_id = %s ORDER BY m.id
"""

ids = st.lists(
    st.sampled_from([*list("abc'\"\\;,|\t\n\r-_ .é☃"), "\\.", "--", "/*"]),
    min_size=1, max_size=30,
).map(lambda parts: "msg_" + "".join(parts))
texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(["a", "\x00", "'", "\\", "\t", "\n", "\u00e9"]), max_size=20),
)
raw_bytes = st.one_of(
    st.just(b"\xed\xa0\x80"),  # a lone surrogate, CESU-style
    st.just(b"\xff\xfe"),
    st.just(b"ok \x80 stray"),
    st.binary(max_size=16),
)
roles = st.one_of(st.sampled_from(["user", "assistant", "system"]),
                  st.sampled_from(["admin", "", "USER", "tool"]))
timestamps = st.one_of(st.just("2026-03-01T10:00:00.000Z"), st.sampled_from([
    "2026-03-01", "99999-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z", "294277-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
    "infinity", "-infinity", "now", "today", "epoch", "not a date", "", "2026-03-01 10:00+14",
]))
tokens = st.one_of(
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63 - 1, -(2**63), 1.5, "abc", "12"]),
)
models = st.one_of(st.none(), st.text(max_size=5), st.just("m" * 150))
parents = st.sampled_from(["own", "own", "missing", "bob"])

message = st.fixed_dictionaries({
    "id": ids, "parent": parents, "role": roles, "content": texts,
    "raw": st.one_of(st.none(), st.none(), raw_bytes),
    "blob": st.sampled_from([False, False, False, True]), "model": models,
    "input": tokens, "output": tokens,
    "timestamp": timestamps,
})


def hostile(path: Path) -> sqlite3.Connection:
    conn = plain(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA ignore_check_constraints = ON")
    return conn


def ensure_bob(remote_dsn: str) -> None:
    """Bob's private conversation on the remote, pushed by Bob's own device."""
    with psycopg.connect(remote_dsn) as conn:
        if conn.execute("SELECT 1 FROM chat_sessions WHERE id = %s", (BOB_CONV,)).fetchone():
            return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bob.db"
        with Store(path) as s:
            s.sign_in(BOB, "bob@example.com")
            c = s.conn
            c.execute(HOSTILE_INSERT_CONVERSATION,
                      (BOB_CONV, BOB, "bob's", "2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"))
            c.execute(HOSTILE_INSERT_MESSAGE, (BOB_MSG, BOB_CONV, "user", "bob's secret",
                                               None, 3, 0, 3, "2026-03-01T00:00:00Z"))
        sync(path, remote_dsn)


def sync(path: Path, dsn: str, batch_size: int = 4) -> Any:
    engine = SyncEngine(path, dsn, batch_size=batch_size)
    try:
        report = engine.sync()
    finally:
        engine.close()
    assert report.ok, report.error  # refusals are quarantined, never a failed sync
    return report


def _parse(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        return None


def check_row(local: sqlite3.Row, remote_row: tuple | None, quarantined: dict[str, str],
              user: str) -> None:
    mid = local[0]
    if mid in quarantined:
        assert quarantined[mid].strip(), f"{mid!r} quarantined without a reason"
        return
    assert remote_row is not None, f"{mid!r} neither synced nor quarantined: {tuple(local)}"
    rid, session, role, content, model, inp, out, ts, owner = remote_row
    assert owner == user, f"{mid!r} landed in another user's conversation"
    assert (rid, session, role, content, model) == tuple(local[:5]), (tuple(local), remote_row)
    assert (inp, out) == (local[5], local[6]), (tuple(local), remote_row)
    local_ts = _parse(local[7])
    if local_ts is not None and local_ts.tzinfo is None:
        local_ts = local_ts.replace(tzinfo=ts.tzinfo)
    assert local_ts == ts, f"{mid!r}: local timestamp {local[7]!r} arrived as {ts}"


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(message, min_size=1, max_size=8, unique_by=lambda m: m["id"]),
       title=texts)
@example(rows=[{"id": f"msg_{ts}", "parent": "own", "role": "user", "content": "x", "raw": None,
                 "blob": False, "model": None, "input": 1, "output": 2, "timestamp": ts}
                for ts in ("now", "infinity", "epoch", "2026-03-01")], title="t")
@example(rows=[{"id": "msg_blob", "parent": "own", "role": "user", "content": "x", "raw": None,
                "blob": True, "model": None, "input": 1, "output": 2,
                "timestamp": "2026-03-01T10:00:00.000Z"}], title="t")
def test_hostile_rows_sync_or_are_quarantined(
    rows: list[dict[str, Any]], title: str, remote_dsn: str, remote: psycopg.Connection
) -> None:
    ensure_bob(remote_dsn)
    bob_before = remote.execute(BOB_ROWS, (BOB,)).fetchall()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        user = str(uuid.uuid4())
        with Store(path) as s:
            s.sign_in(user)
            good = s.create_conversation("well-formed")
            for i in range(3):
                s.add_message(good.id, "user", f"fine {i}", input_tokens=i)
        conn = hostile(path)
        conn.execute(HOSTILE_INSERT_CONVERSATION, ("conv_own", user, title,
                                                   "2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"))
        # Bob's conversation id, claimed locally by this user: RLS must refuse it.
        conn.execute(HOSTILE_INSERT_CONVERSATION, (BOB_CONV, user, "mine now",
                                                   "2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"))
        for r in rows:
            r["id"] = f"{user[:8]}_{r['id']}"  # examples share one database
            parent = {"own": "conv_own", "missing": "conv_missing", "bob": BOB_CONV}[r["parent"]]
            if r["raw"] is not None:
                conn.execute(HOSTILE_INSERT_RAW_CONTENT, (r["id"], parent, r["raw"]))
                continue
            content: str | bytes = r["content"].encode() if r["blob"] else r["content"]
            conn.execute(HOSTILE_INSERT_MESSAGE, (r["id"], parent, r["role"], content, r["model"],
                                                  r["input"], r["output"], 0, r["timestamp"]))
        conn.close()

        sync(path, remote_dsn)

        local = plain(path)
        local.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
        quarantined = dict(local.execute(QUARANTINED, ("message",)).fetchall())
        q_convs = dict(local.execute(QUARANTINED, ("conversation",)).fetchall())
        assert BOB_CONV in q_convs, "another user's conversation id was not refused"
        for r in rows:
            row = local.execute(LOCAL_MESSAGE, (r["id"],)).fetchone()
            if r["parent"] == "missing":
                # unattributable: stays local, never sent, and shown as quarantined
                assert "conv_missing" in quarantined.get(r["id"], ""), r["id"]
                assert remote.execute(REMOTE_MESSAGE, (r["id"],)).fetchone() is None
                continue
            if r["parent"] == "bob":
                # waits with its quarantined conversation; never lands in Bob's
                assert remote.execute(REMOTE_MESSAGE, (r["id"],)).fetchone() is None
                continue
            if "conv_own" in q_convs:
                continue  # the conversation itself was refused (its title); its messages wait
            check_row(row, remote.execute(REMOTE_MESSAGE, (r["id"],)).fetchone(), quarantined,
                      user)
        fine = remote.execute(
            "SELECT count(*) FROM chat_messages WHERE session_id = %s", (good.id,)).fetchone()[0]
        assert fine == 3, "the well-formed rows did not all sync"
        local.close()
    assert remote.execute(BOB_ROWS, (BOB,)).fetchall() == bob_before, "Bob's data changed"
    assert usage(remote) == audited_truth(remote)


@pytest.mark.skipif(not LONG and os.environ.get("CI_FAST") == "1", reason="fast run")
def test_ten_megabyte_message_syncs(store_path: Path, remote_dsn: str,
                                    remote: psycopg.Connection) -> None:
    big = ("0123456789abcdef" * 65536) * 10  # 10 MiB
    with Store(store_path) as s:
        s.sign_in(str(uuid.uuid4()))
        c = s.create_conversation("big")
        s.add_message(c.id, "user", big)
        s.add_message(c.id, "assistant", "small", output_tokens=5)
    report = sync(store_path, remote_dsn, batch_size=1000)
    assert report.messages.sent == 2 and report.quarantined == 0
    got = remote.execute("SELECT length(content) FROM chat_messages WHERE content_type = 'text' "
                         "ORDER BY length(content) DESC LIMIT 1").fetchone()[0]
    assert got == len(big)
    assert sync(store_path, remote_dsn).sent == 0
    assert usage(remote) == audited_truth(remote)
