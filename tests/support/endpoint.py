"""An emulation of the web app's `POST /api/chat/sync`, the baseline chatsync replaces.

The client (`useChatSync`) sends every conversation of the signed-in user with all of its
messages; the route handler (see ../shared/seed/sync-endpoint-flow.md) then, for each
conversation, upserts the `chat_sessions` row and upserts all of its messages in one bulk
upsert, as supabase-js `.upsert(rows)` does through PostgREST: one request (and so one
transaction) each, run as the role `authenticated` with the user's JWT claims, every column
of the payload overwritten on conflict. Nothing is compared first, so every existing row is
UPDATEd and the app's per-row triggers fire (and count usage) for each of them again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

SET_ROLE = "SET LOCAL ROLE authenticated"
SET_CLAIMS = "SELECT set_config('request.jwt.claims', %s, true)"

# supabase.from('chat_sessions').upsert({...}): PostgREST's merge-duplicates upsert.
UPSERT_SESSION = """
INSERT INTO public.chat_sessions AS s (id, user_id, title, created_at, updated_at,
    message_count, total_tokens, last_model, last_message_preview, last_message_timestamp)
VALUES (%(id)s, %(user_id)s, %(title)s, %(created_at)s, %(updated_at)s, %(message_count)s,
    %(total_tokens)s, %(last_model)s, %(last_message_preview)s, %(last_message_timestamp)s)
ON CONFLICT (id) DO UPDATE SET
    user_id = EXCLUDED.user_id,
    title = EXCLUDED.title,
    created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at,
    message_count = EXCLUDED.message_count,
    total_tokens = EXCLUDED.total_tokens,
    last_model = EXCLUDED.last_model,
    last_message_preview = EXCLUDED.last_message_preview,
    last_message_timestamp = EXCLUDED.last_message_timestamp
"""

# supabase.from('chat_messages').upsert(messages): one statement over a JSON array.
UPSERT_MESSAGES = """
INSERT INTO public.chat_messages AS m (id, session_id, role, content, model, total_tokens,
    input_tokens, output_tokens, user_message_id, content_type, elapsed_time, completion_id,
    message_timestamp, error_message)
SELECT id, session_id, role, content, model, total_tokens, input_tokens, output_tokens,
       user_message_id, content_type, elapsed_time, completion_id, message_timestamp,
       error_message
FROM jsonb_to_recordset(%(rows)s) AS r(
    id text, session_id text, role text, content text, model text, total_tokens int,
    input_tokens int, output_tokens int, user_message_id text, content_type text,
    elapsed_time int, completion_id text, message_timestamp timestamptz, error_message text)
ON CONFLICT (id) DO UPDATE SET
    session_id = EXCLUDED.session_id,
    role = EXCLUDED.role,
    content = EXCLUDED.content,
    model = EXCLUDED.model,
    total_tokens = EXCLUDED.total_tokens,
    input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens,
    user_message_id = EXCLUDED.user_message_id,
    content_type = EXCLUDED.content_type,
    elapsed_time = EXCLUDED.elapsed_time,
    completion_id = EXCLUDED.completion_id,
    message_timestamp = EXCLUDED.message_timestamp,
    error_message = EXCLUDED.error_message
"""

# What the client holds for each conversation (its Conversation objects), from the store.
LOCAL_CONVERSATIONS = """
SELECT c.id, c.title, c.user_id, c.created_at, c.updated_at,
       s.message_count, s.total_tokens, s.last_model, s.last_message_preview,
       s.last_message_timestamp
FROM conversations AS c JOIN conversation_stats AS s ON s.conversation_id = c.id
WHERE c.user_id = :user_id
ORDER BY c.created_at, c.id
"""
LOCAL_MESSAGES = """
SELECT id, content, role, timestamp, elapsed_time, total_tokens, input_tokens, output_tokens,
       user_message_id, model, content_type, completion_id, error
FROM messages WHERE conversation_id = :conversation_id ORDER BY timestamp, id
"""


@dataclass(slots=True)
class EndpointResult:
    """The route's response: `{"synced", "errors", "details"}`."""

    synced: int = 0
    errors: int = 0
    sessions_sent: int = 0
    messages_sent: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)


def iter_client_conversations(store_path: str | Path, user_id: str) -> Iterator[dict[str, Any]]:
    """The client's `Conversation` objects (camelCase, messages included), one at a time."""
    conn = sqlite3.connect(store_path)
    conn.row_factory = sqlite3.Row
    try:
        for c in conn.execute(LOCAL_CONVERSATIONS, {"user_id": user_id}).fetchall():
            messages = [
                {
                    "id": m["id"], "content": m["content"], "role": m["role"],
                    "timestamp": m["timestamp"], "elapsed_time": m["elapsed_time"],
                    "total_tokens": m["total_tokens"], "input_tokens": m["input_tokens"],
                    "output_tokens": m["output_tokens"],
                    "user_message_id": m["user_message_id"], "model": m["model"],
                    "contentType": m["content_type"], "completion_id": m["completion_id"],
                    "error": bool(m["error"]),
                }
                for m in conn.execute(LOCAL_MESSAGES, {"conversation_id": c["id"]})
            ]
            yield {
                "id": c["id"], "title": c["title"], "messages": messages, "userId": c["user_id"],
                "createdAt": c["created_at"], "updatedAt": c["updated_at"],
                "messageCount": c["message_count"], "totalTokens": c["total_tokens"],
                "lastModel": c["last_model"], "lastMessagePreview": c["last_message_preview"],
                "lastMessageTimestamp": c["last_message_timestamp"],
            }
    finally:
        conn.close()


def client_payload(store_path: str | Path, user_id: str) -> list[dict[str, Any]]:
    """`{"conversations": [...]}` as `syncConversations` builds it: everything, in memory."""
    return list(iter_client_conversations(store_path, user_id))


def endpoint_sync(
    conn: psycopg.Connection, user_id: str, conversations: Iterable[dict[str, Any]]
) -> EndpointResult:
    """Handle one `POST /api/chat/sync` for *user_id* on an autocommit connection."""
    claims = json.dumps({"sub": user_id, "role": "authenticated"})
    result = EndpointResult()
    for conv in conversations:
        session_row = {
            "id": conv["id"], "user_id": user_id, "title": conv["title"],
            "created_at": conv["createdAt"], "updated_at": conv["updatedAt"],
            "message_count": conv["messageCount"], "total_tokens": conv["totalTokens"],
            "last_model": conv["lastModel"], "last_message_preview": conv["lastMessagePreview"],
            "last_message_timestamp": conv["lastMessageTimestamp"],
        }
        message_rows = [
            {
                "id": m["id"], "session_id": conv["id"], "role": m["role"],
                "content": m["content"], "model": m["model"],
                "total_tokens": m["total_tokens"], "input_tokens": m["input_tokens"],
                "output_tokens": m["output_tokens"], "user_message_id": m["user_message_id"],
                "content_type": m["contentType"] or "text", "elapsed_time": m["elapsed_time"],
                "completion_id": m["completion_id"], "message_timestamp": m["timestamp"],
                "error_message": "Message failed" if m["error"] else None,
            }
            for m in conv["messages"]
        ]
        try:
            with conn.transaction():
                conn.execute(SET_ROLE)
                conn.execute(SET_CLAIMS, (claims,))
                conn.execute(UPSERT_SESSION, session_row)
            result.sessions_sent += 1
            if message_rows:
                with conn.transaction():
                    conn.execute(SET_ROLE)
                    conn.execute(SET_CLAIMS, (claims,))
                    conn.execute(UPSERT_MESSAGES, {"rows": Jsonb(message_rows)})
                result.messages_sent += len(message_rows)
            result.synced += 1
        except psycopg.Error as exc:
            result.errors += 1
            result.details.append({"id": conv["id"], "error": str(exc)})
    return result
