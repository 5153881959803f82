"""The client API: what a desktop chat client calls to keep its conversations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from localstore.connection import connect
from localstore.errors import InvalidRow, NotFound
from localstore.ids import new_id
from localstore.models import MESSAGE_FIELDS, AuthSession, Conversation, Message
from localstore.timestamps import utc_now
from localstore.transaction import write_transaction

if TYPE_CHECKING:
    import sqlite_utils

CLAIM_ANONYMOUS = "UPDATE conversations SET user_id = :user_id WHERE user_id IS NULL"


class Store:
    """A local chat store file. Every write is tracked for sync by the file's own triggers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn: sqlite3.Connection = connect(self.path)
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the same connection, for the write helpers.

        Imported on first write: reading the store (`chatsync status`) should not pay for it.
        """
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; constraint failures become `InvalidRow`."""
        try:
            with write_transaction(self.conn) as conn:
                yield conn
        except sqlite3.IntegrityError as exc:
            raise InvalidRow(_explain(exc)) from None

    # --- signing in -------------------------------------------------------------------

    def sign_in(self, user_id: str, email: str = "") -> AuthSession:
        user_id = user_id.lower()  # the store keeps UUIDs as PostgreSQL prints them
        with self.transaction() as conn:
            conn.execute("DELETE FROM auth_session")
            conn.execute(
                "INSERT INTO auth_session (user_id, email) VALUES (?, ?)", (user_id, email)
            )
        session = self.signed_in()
        assert session is not None
        return session

    def sign_out(self) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM auth_session")

    def signed_in(self) -> AuthSession | None:
        row = self.conn.execute(
            "SELECT user_id, email, signed_in_at FROM auth_session"
        ).fetchone()
        return AuthSession(**dict(row)) if row else None

    def claim_anonymous(self, user_id: str) -> int:
        """Give the signed-out conversations to *user_id*; returns how many."""
        with self.transaction() as conn:
            return conn.execute(CLAIM_ANONYMOUS, {"user_id": user_id}).rowcount

    # --- conversations ----------------------------------------------------------------

    def create_conversation(
        self, title: str = "New Chat", *, id: str | None = None, created_at: str | None = None
    ) -> Conversation:
        """A new conversation, owned by the signed-in user (or no one while signed out)."""
        session = self.signed_in()
        now = created_at or utc_now()
        conversation_id = id or new_id("conv")
        row = {
            "id": conversation_id,
            "user_id": session.user_id if session else None,
            "title": title,
            "created_at": now,
            "updated_at": now,
        }
        with self.transaction():
            self.db.table("conversations").insert(row)
        return self.conversation(conversation_id)

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation:
        self._update("conversations", conversation_id, {"title": title, "updated_at": utc_now()})
        return self.conversation(conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        self._delete("conversations", conversation_id)

    def conversation(self, conversation_id: str) -> Conversation:
        return Conversation.from_row(self._get("conversations", conversation_id))

    def conversations(self) -> list[Conversation]:
        rows = self.conn.execute("SELECT * FROM conversations ORDER BY created_at, id")
        return [Conversation.from_row(r) for r in rows]

    # --- messages ---------------------------------------------------------------------

    def add_message(
        self, conversation_id: str, role: str, content: str, *, id: str | None = None,
        **fields: Any,
    ) -> Message:
        _check_fields(fields)
        row = {
            "id": id or new_id("msg"),
            "conversation_id": conversation_id,
            "role": role,
            "content": content,
            "timestamp": utc_now(),
            **fields,
        }
        with self.transaction():
            if not self.conn.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone():
                raise NotFound(f"no conversation {conversation_id!r}")
            self.db.table("messages").insert(row)
            self.conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (utc_now(), conversation_id)
            )
        return self.message(row["id"])

    def update_message(self, message_id: str, **fields: Any) -> Message:
        _check_fields(fields)
        self._update("messages", message_id, fields)
        return self.message(message_id)

    def delete_message(self, message_id: str) -> None:
        self._delete("messages", message_id)

    def message(self, message_id: str) -> Message:
        return Message.from_row(self._get("messages", message_id))

    def messages(self, conversation_id: str) -> list[Message]:
        rows = self.conn.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY timestamp, id",
            (conversation_id,),
        )
        return [Message.from_row(r) for r in rows]

    # --- plumbing ---------------------------------------------------------------------

    def _get(self, table: str, row_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self.conn.execute(
            f"SELECT * FROM {table} WHERE id = ?", (row_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no {table[:-1]} {row_id!r}")
        return row

    def _update(self, table: str, row_id: str, fields: dict[str, Any]) -> None:
        with self.transaction():
            self._get(table, row_id)  # NotFound, checked inside the write transaction
            self.db.table(table).update(row_id, fields)

    def _delete(self, table: str, row_id: str) -> None:
        with self.transaction() as conn:
            if conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,)).rowcount == 0:
                raise NotFound(f"no {table[:-1]} {row_id!r}")


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - MESSAGE_FIELDS
    if unknown:
        raise InvalidRow(f"unknown message field(s): {', '.join(sorted(unknown))}")


def _explain(exc: sqlite3.IntegrityError) -> str:
    text = str(exc)
    prefix = "CHECK constraint failed: "
    if text.startswith(prefix):
        return text[len(prefix):]
    if text.startswith("NOT NULL constraint failed: "):
        return f"{text.split(': ', 1)[1]} is required"
    if text.startswith("FOREIGN KEY"):
        return "the message's conversation does not exist"
    return text

