"""Store files for tests and benchmarks: filled with plain SQL (as a client app writes
them), edited at random, and compared with the remote.

The end state after any fault and a final clean sync (`assert_converged`):
- local equals remote: every local conversation and message of the user is on the remote
  with the same client-owned values, and nothing of the user's is on the remote that is not
  local (deletes arrived);
- nothing is pending and no tombstone is left (no edit lost);
- every usage figure equals the truth computed from the audit tables (nothing counted twice).
"""

from __future__ import annotations

import os
import random
import sqlite3
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

from localstore import Store
from tests.support.remote_facts import audited_truth, usage

LONG = bool(os.environ.get("CHATSYNC_LONG"))

REMOTE_SESSIONS = """
SELECT id, user_id::text, title, is_active FROM public.chat_sessions
WHERE user_id = %(user_id)s ORDER BY id
"""
REMOTE_MESSAGES = """
SELECT m.id, m.session_id, m.role, m.content, m.model, m.input_tokens, m.output_tokens,
       m.total_tokens, m.message_timestamp
FROM public.chat_messages AS m JOIN public.chat_sessions AS s ON s.id = m.session_id
WHERE s.user_id = %(user_id)s ORDER BY m.id
"""
LOCAL_CONVERSATIONS = """
SELECT id, user_id, title, is_active FROM conversations WHERE user_id = ? ORDER BY id
"""
LOCAL_MESSAGES = """
SELECT m.id, m.conversation_id, m.role, m.content, m.model, m.input_tokens, m.output_tokens,
       m.total_tokens, m.timestamp
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE c.user_id = ? ORDER BY m.id
"""
LOCAL_DIRTY = """
SELECT (SELECT count(*) FROM conversations WHERE rev > synced_rev)
     + (SELECT count(*) FROM messages WHERE rev > synced_rev)
     + (SELECT count(*) FROM tombstones)
"""
INSERT_CONVERSATION = """
INSERT INTO conversations (id, user_id, title, created_at) VALUES (?, ?, ?, ?)
"""
INSERT_MESSAGE = """
INSERT INTO messages (id, conversation_id, role, content, model, input_tokens,
    output_tokens, total_tokens, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def seed_from_env(default: int | None = None) -> int:
    """`CHATSYNC_FAULT_SEED` replays a run; otherwise a fresh seed, printed by the caller."""
    raw = os.environ.get("CHATSYNC_FAULT_SEED")
    if raw:
        return int(raw)
    return default if default is not None else random.SystemRandom().randrange(1, 2**31)


# --- stores ----------------------------------------------------------------------------

def new_user(store_path: Path, email: str = "") -> str:
    user = str(uuid.uuid4())
    with Store(store_path) as store:
        store.sign_in(user, email or f"{user[:8]}@example.com")
    return user


def plain(store_path: Path) -> sqlite3.Connection:
    """A client's own SQLite connection, the way an Electron or Tauri app would open it."""
    conn = sqlite3.connect(store_path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def fill(store: Store | Path, user: str | None = None, conversations: int = 1,
         per_conversation: int = 1, tag: str = "") -> list[str]:
    """Conversations of alternating user/assistant messages with token counts, written with
    plain SQL in one transaction; their ids (`conv_{tag}{c}`, messages `msg_{tag}{c}_{i}`).

    *user* owns them; by default the store's signed-in user.
    """
    conn = plain(store.path if isinstance(store, Store) else store)
    try:
        if user is None:
            user = conn.execute("SELECT user_id FROM auth_session").fetchone()[0]
        ids = []
        conn.execute("BEGIN IMMEDIATE")
        for c in range(conversations):
            cid = f"conv_{tag}{c}"
            ids.append(cid)
            conn.execute(INSERT_CONVERSATION,
                         (cid, user, f"conversation {tag}{c}", "2026-03-01T10:00:00.000Z"))
            conn.executemany(INSERT_MESSAGE, [
                (f"msg_{tag}{c}_{i}", cid, "user" if i % 2 == 0 else "assistant",
                 f"message {i} of {tag}{c} " * 4, None if i % 2 == 0 else "gpt-x",
                 10 + i, 0 if i % 2 == 0 else 20 + i, 10 + i + (0 if i % 2 == 0 else 20 + i),
                 f"2026-03-0{1 + i % 3}T10:{i % 60:02d}:00.000Z")
                for i in range(per_conversation)
            ])
        conn.execute("COMMIT")
        return ids
    finally:
        conn.close()


def random_edits(store_path: Path, rng: random.Random, n: int, round_no: int) -> None:
    """Edits of every kind a client makes: content, tokens, day, new rows, deletes."""
    conn = plain(store_path)
    try:
        msgs = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")]
        convs = [r[0] for r in conn.execute("SELECT id FROM conversations ORDER BY id")]
        user = conn.execute("SELECT user_id FROM auth_session").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        for k in range(n):
            op = rng.choice(["content", "tokens", "day", "add", "delete_msg", "rename",
                             "add_conv", "delete_conv"])
            if op == "content" and msgs:
                conn.execute("UPDATE messages SET content = ? WHERE id = ?",
                             (f"edited r{round_no} k{k}", rng.choice(msgs)))
            elif op == "tokens" and msgs:
                a, b = rng.randrange(0, 500), rng.randrange(0, 500)
                conn.execute("UPDATE messages SET input_tokens = ?, output_tokens = ?, "
                             "total_tokens = ? WHERE id = ?", (a, b, a + b, rng.choice(msgs)))
            elif op == "day" and msgs:
                conn.execute("UPDATE messages SET timestamp = ? WHERE id = ?",
                             (f"2026-02-{rng.randrange(1, 28):02d}T08:00:00.000Z",
                              rng.choice(msgs)))
            elif op == "add" and convs:
                mid = f"msg_r{round_no}_{k}"
                conn.execute(INSERT_MESSAGE, (mid, rng.choice(convs), rng.choice(
                    ["user", "assistant", "system"]), f"new r{round_no}", "gpt-y", 5, 7, 12,
                    "2026-03-02T09:00:00.000Z"))
                msgs.append(mid)
            elif op == "delete_msg" and msgs:
                victim = msgs.pop(rng.randrange(len(msgs)))
                conn.execute("DELETE FROM messages WHERE id = ?", (victim,))
            elif op == "rename" and convs:
                conn.execute("UPDATE conversations SET title = ? WHERE id = ?",
                             (f"renamed r{round_no} k{k}", rng.choice(convs)))
            elif op == "add_conv":
                cid = f"conv_r{round_no}_{k}"
                conn.execute(INSERT_CONVERSATION, (cid, user, "added", "2026-03-03T00:00:00Z"))
                convs.append(cid)
            elif op == "delete_conv" and len(convs) > 2 and rng.random() < 0.3:
                victim = convs.pop(rng.randrange(len(convs)))
                conn.execute("DELETE FROM conversations WHERE id = ?", (victim,))
                msgs = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")]
        conn.execute("COMMIT")
    finally:
        conn.close()


# --- the end state ---------------------------------------------------------------------


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def local_user_rows(store_path: Path, user: str) -> tuple[list[tuple], list[tuple]]:
    conn = plain(store_path)
    try:
        convs = [(i, u, t, bool(a)) for i, u, t, a in conn.execute(LOCAL_CONVERSATIONS, (user,))]
        msgs = [(*r[:8], _ts(r[8])) for r in conn.execute(LOCAL_MESSAGES, (user,))]
        return convs, msgs
    finally:
        conn.close()


def remote_user_rows(remote: psycopg.Connection, user: str) -> tuple[list[tuple], list[tuple]]:
    convs = [tuple(r) for r in remote.execute(REMOTE_SESSIONS, {"user_id": user})]
    msgs = [tuple(r) for r in remote.execute(REMOTE_MESSAGES, {"user_id": user})]
    return convs, msgs


def local_dirty(store_path: Path) -> int:
    conn = plain(store_path)
    try:
        return int(conn.execute(LOCAL_DIRTY).fetchone()[0])
    finally:
        conn.close()


def assert_converged(store_path: Path, remote: psycopg.Connection, user: str) -> None:
    assert local_dirty(store_path) == 0, "rows still pending after the final sync"
    local_c, local_m = local_user_rows(store_path, user)
    remote_c, remote_m = remote_user_rows(remote, user)
    assert remote_c == local_c
    if remote_m != local_m:
        lm, rm = {m[0]: m for m in local_m}, {m[0]: m for m in remote_m}
        diff = {k: (lm.get(k), rm.get(k)) for k in lm.keys() | rm.keys() if lm.get(k) != rm.get(k)}
        raise AssertionError(f"{len(diff)} messages differ (local, remote): "
                             f"{dict(list(diff.items())[:5])}")
    assert usage(remote) == audited_truth(remote), "usage figures differ from the truth"
