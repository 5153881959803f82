"""Shared helpers for the fault suite (tests/test_faults_*.py): real `chatsync` processes,
stores filled with plain SQL, and the end-state checks every fault test ends with.

The end state after any fault and a final clean sync:
- local equals remote: every local conversation and message of the user is on the remote
  with the same client-owned values, and nothing of the user's is on the remote that is not
  local (deletes arrived);
- nothing is pending and no tombstone is left (no edit lost);
- every usage figure equals the truth computed from the audit tables (nothing counted twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from daemon import control
from localstore import Store
from tests.daemon_proc import wait_for
from tests.remote_facts import audited_truth, usage

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
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


def fill(store_path: Path, user: str, conversations: int, per_conversation: int,
         tag: str = "") -> None:
    """Conversations of alternating user/assistant messages, written with plain SQL."""
    conn = plain(store_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for c in range(conversations):
            cid = f"conv_{tag}{c}"
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


def local_rows(store_path: Path, user: str) -> tuple[list[tuple], list[tuple]]:
    conn = plain(store_path)
    try:
        convs = [(i, u, t, bool(a)) for i, u, t, a in conn.execute(LOCAL_CONVERSATIONS, (user,))]
        msgs = [(*r[:8], _ts(r[8])) for r in conn.execute(LOCAL_MESSAGES, (user,))]
        return convs, msgs
    finally:
        conn.close()


def remote_rows(remote: psycopg.Connection, user: str) -> tuple[list[tuple], list[tuple]]:
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
    local_c, local_m = local_rows(store_path, user)
    remote_c, remote_m = remote_rows(remote, user)
    assert remote_c == local_c
    if remote_m != local_m:
        lm, rm = {m[0]: m for m in local_m}, {m[0]: m for m in remote_m}
        diff = {k: (lm.get(k), rm.get(k)) for k in lm.keys() | rm.keys() if lm.get(k) != rm.get(k)}
        raise AssertionError(f"{len(diff)} messages differ (local, remote): "
                             f"{dict(list(diff.items())[:5])}")
    assert usage(remote) == audited_truth(remote), "usage figures differ from the truth"


# --- chatsync processes ----------------------------------------------------------------

def write_config(workdir: Path, *, store: Path, dsn: str, batch_size: int = 1000,
                 **sync: Any) -> tuple[Path, Path]:
    """A config file and the (short) control socket path it names."""
    sockdir = Path(tempfile.mkdtemp(prefix="csf-", dir="/tmp"))
    socket_path = sockdir / "ctl.sock"
    lines = ["[local]", f"path = {json.dumps(str(store))}", "[remote]",
             f"dsn = {json.dumps(dsn)}", "[sync]", f"batch_size = {batch_size}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in sync.items()]
    lines += ["[daemon]", f"socket = {json.dumps(str(socket_path))}", 'log_level = "debug"']
    path = workdir / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, socket_path


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATSYNC_") or k == "CHATSYNC_LONG"}
    env.update(extra)
    return env


def cli(config: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), *args], cwd=ROOT,
        env=env or child_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def spawn(config: Path, *args: str, env: dict[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config), *args], cwd=ROOT,
            env=env or child_env(), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


class Daemon:
    """`chatsync run --watch off` (schedule and sync-now only, so tests decide when it syncs)."""

    def __init__(self, config: Path, socket_path: Path, log: Path,
                 env: dict[str, str] | None = None, watch: str = "off") -> None:
        self.config, self.socket, self.log_path = config, socket_path, log
        self.env, self.watch = env, watch
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> Daemon:
        self.proc = spawn(self.config, "run", "--watch", self.watch, env=self.env,
                          log=self.log_path)
        if wait:
            wait_for(self._ready, 30, "the daemon's control socket")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
        return control.ping(self.socket)

    def status(self) -> dict[str, Any]:
        answer = control.request(self.socket, "GET", "/status")
        assert answer is not None, f"daemon not answering:\n{self.log()}"
        return answer.json()

    def get_text(self, route: str) -> str:
        answer = control.request(self.socket, "GET", route)
        assert answer is not None, f"daemon not answering:\n{self.log()}"
        return answer.text

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
