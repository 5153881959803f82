"""A reproducible chat store for the benchmark, and reproducible changes to it.

Everything is drawn from one seeded `random.Random`, so the same arguments make the same
store, byte for byte in its rows. Rows are written with plain SQL through the store's own
change-tracking triggers (as a desktop client would), in chunks, so generating a million
messages needs little memory.

Sizes: user messages are short (log-normal, median about 160 characters), assistant replies
longer (median about 1,100 characters, markdown), capped at 24,000. Token counts are about a
quarter of the characters; a reply's input tokens are its question plus a system prompt, not
the whole context, so the app's re-counting baseline stays inside PostgreSQL's `integer`.
"""

from __future__ import annotations

import math
import random
import sqlite3
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from localstore import connect

USER_ID = "b0000000-0000-4000-8000-00000000be00"
EMAIL = "bench@example.com"
MODELS = (
    ("openai/gpt-4o-mini", 5), ("anthropic/claude-3.5-sonnet", 3),
    ("google/gemini-2.0-flash-001", 2), ("deepseek/deepseek-r1-0528:free", 1),
)
CHUNK = 5_000  # rows per executemany / transaction while generating
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

INSERT_CONVERSATION = """
INSERT INTO conversations (id, user_id, title, created_at, updated_at)
VALUES (:id, :user_id, :title, :created_at, :updated_at)
"""
INSERT_MESSAGE = """
INSERT INTO messages (id, conversation_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id, timestamp)
VALUES (:id, :conversation_id, :role, :content, :model, :total_tokens, :input_tokens,
    :output_tokens, :user_message_id, :content_type, :elapsed_time, :completion_id, :timestamp)
"""
SIGN_IN = "INSERT INTO auth_session (user_id, email) VALUES (:user_id, :email)"
EDIT_MESSAGE = """
UPDATE messages SET content = :content, output_tokens = :output_tokens,
    total_tokens = input_tokens + :output_tokens
WHERE id = :id
"""
LAST_MESSAGE_OF = """
SELECT id, timestamp FROM messages WHERE conversation_id = :conversation_id
ORDER BY timestamp DESC, id DESC LIMIT 1
"""
MESSAGE_IDS = "SELECT id FROM messages ORDER BY id"
CONVERSATION_IDS = "SELECT id FROM conversations ORDER BY id"


@dataclass(frozen=True, slots=True)
class Shape:
    conversations: int = 2_000
    per_conversation: int = 50
    seed: int = 42

    @property
    def messages(self) -> int:
        return self.conversations * self.per_conversation


class _Text:
    """Cheap reproducible prose: slices of one seeded corpus of made-up words."""

    def __init__(self, rng: random.Random) -> None:
        words = [
            "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 10)))
            for _ in range(3_000)
        ]
        parts: list[str] = []
        size = 0
        while size < 1_000_000:
            w = rng.choice(words)
            if rng.random() < 0.08:
                w += rng.choice((".", ",", "?", ".\n\n"))
            parts.append(w)
            size += len(w) + 1
        self.corpus = " ".join(parts)
        self.rng = rng

    def take(self, length: int) -> str:
        start = self.rng.randrange(0, len(self.corpus) - length - 1)
        return self.corpus[start:start + length]

    def length(self, median: float, sigma: float, cap: int) -> int:
        return max(2, min(cap, int(self.rng.lognormvariate(math.log(median), sigma))))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _id(rng: random.Random, prefix: str, t: datetime) -> str:
    suffix = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    return f"{prefix}_{int(t.timestamp() * 1000)}_{suffix}"


def _model(rng: random.Random) -> str:
    names, weights = zip(*MODELS, strict=True)
    return rng.choices(names, weights)[0]


def _rows(shape: Shape) -> Iterator[tuple[dict, list[dict]]]:
    rng = random.Random(shape.seed)
    text = _Text(rng)
    for _ in range(shape.conversations):
        started = EPOCH + timedelta(seconds=rng.randrange(0, 120 * 86_400))
        conv = {
            "id": _id(rng, "conv", started), "user_id": USER_ID,
            "title": text.take(rng.randint(12, 60)).strip() or "New Chat",
            "created_at": _iso(started), "updated_at": _iso(started),
        }
        messages = []
        t = started
        question = None
        for i in range(shape.per_conversation):
            t += timedelta(seconds=rng.randint(5, 600))
            if i % 2 == 0:
                content = text.take(text.length(160, 1.0, 8_000))
                tokens = max(1, len(content) // 4)
                question = {
                    "id": _id(rng, "msg", t), "conversation_id": conv["id"], "role": "user",
                    "content": content, "model": None, "total_tokens": tokens,
                    "input_tokens": tokens, "output_tokens": 0, "user_message_id": None,
                    "content_type": "text", "elapsed_time": 0, "completion_id": None,
                    "timestamp": _iso(t),
                }
                messages.append(question)
            else:
                content = text.take(text.length(1_100, 0.9, 24_000))
                out = max(1, len(content) // 4)
                inp = (question["input_tokens"] if question else 0) + rng.randint(20, 300)
                messages.append({
                    "id": _id(rng, "msg", t), "conversation_id": conv["id"],
                    "role": "assistant", "content": content, "model": _model(rng),
                    "total_tokens": inp + out, "input_tokens": inp, "output_tokens": out,
                    "user_message_id": question["id"] if question else None,
                    "content_type": "markdown", "elapsed_time": out * 15 + rng.randint(200, 2000),
                    "completion_id": f"gen-{rng.getrandbits(64):016x}", "timestamp": _iso(t),
                })
        conv["updated_at"] = _iso(t)
        yield conv, messages


def generate(path: Path, shape: Shape) -> None:
    """Write a new store at *path* with the signed-in bench user and *shape*'s rows."""
    if path.exists():
        raise FileExistsError(path)
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(SIGN_IN, {"user_id": USER_ID, "email": EMAIL})
        pending_c: list[dict] = []
        pending_m: list[dict] = []
        for conv, messages in _rows(shape):
            pending_c.append(conv)
            pending_m.extend(messages)
            if len(pending_m) >= CHUNK:
                _flush(conn, pending_c, pending_m)
        _flush(conn, pending_c, pending_m)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _flush(conn: sqlite3.Connection, convs: list[dict], messages: list[dict]) -> None:
    conn.executemany(INSERT_CONVERSATION, convs)
    conn.executemany(INSERT_MESSAGE, messages)
    convs.clear()
    messages.clear()


@dataclass(frozen=True, slots=True)
class Change:
    edited: int
    added: int

    @property
    def total(self) -> int:
        return self.edited + self.added


def change(path: Path, count: int, seed: int) -> Change:
    """Change *count* messages in the store at *path*, tracked as a client's edits would be.

    About four in five are edits of existing messages (new content and output tokens, as a
    regenerated reply); the rest are new messages added to existing conversations. A single
    change is one added message (the common case: someone sent something).
    """
    rng = random.Random(seed)
    text = _Text(rng)
    added = 1 if count == 1 else count // 5
    edited = count - added
    # Plain sqlite3, as a client with its own driver writes: the store's triggers track it.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    try:
        ids = [r[0] for r in conn.execute(MESSAGE_IDS)]
        conversations = [r[0] for r in conn.execute(CONVERSATION_IDS)]
        conn.execute("BEGIN IMMEDIATE")
        for message_id in rng.sample(ids, edited):
            content = text.take(text.length(1_100, 0.9, 24_000))
            conn.execute(EDIT_MESSAGE, {"id": message_id, "content": content,
                                        "output_tokens": max(1, len(content) // 4)})
        for conversation_id in rng.choices(conversations, k=added):
            last = conn.execute(LAST_MESSAGE_OF, {"conversation_id": conversation_id}).fetchone()
            t = datetime.fromisoformat(last["timestamp"]) + timedelta(seconds=rng.randint(5, 900))
            content = text.take(text.length(160, 1.0, 8_000))
            tokens = max(1, len(content) // 4)
            conn.execute(INSERT_MESSAGE, {
                "id": _id(rng, "msg", t), "conversation_id": conversation_id, "role": "user",
                "content": content, "model": None, "total_tokens": tokens,
                "input_tokens": tokens, "output_tokens": 0, "user_message_id": None,
                "content_type": "text", "elapsed_time": 0, "completion_id": None,
                "timestamp": _iso(t),
            })
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return Change(edited, added)
