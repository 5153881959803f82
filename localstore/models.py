"""The rows a desktop client reads and writes, as typed records.

The fields are the synced columns of localstore/columns.py, written out so the records are
typed; tests/test_columns.py fails when they and the spec differ.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from localstore.columns import CONVERSATIONS, MESSAGES, Table

Role = Literal["user", "assistant", "system"]
ContentType = Literal["text", "markdown"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuthSession:
    user_id: str
    email: str
    signed_in_at: str


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    user_id: str | None
    title: str
    created_at: str
    updated_at: str
    is_active: bool
    dirty: bool

    @classmethod
    def from_row(cls, row: Any) -> Conversation:
        return _from_row(cls, _CONVERSATION_FLAGS, row)


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    role: Role
    content: str
    model: str | None
    total_tokens: int
    input_tokens: int
    output_tokens: int
    user_message_id: str | None
    content_type: ContentType
    elapsed_time: int
    completion_id: str | None
    timestamp: str
    error: bool
    error_message: str | None  # the app's error text, when the server has one
    dirty: bool

    @classmethod
    def from_row(cls, row: Any) -> Message:
        return _from_row(cls, _MESSAGE_FLAGS, row)


def _from_row(cls: type[T], flags: tuple[str, ...], row: Any) -> T:
    # SQLite has no boolean type: the flags come back as 0/1.
    values = {f.name: row[f.name] for f in fields(cls)}  # type: ignore[arg-type]
    for name in flags:
        values[name] = bool(values[name])
    return cls(**values)


def _flags(table: Table) -> tuple[str, ...]:
    """The bool columns, and the store's `dirty`."""
    return (*(c.name for c in table.columns if c.kind == "bool"), "dirty")


_CONVERSATION_FLAGS = _flags(CONVERSATIONS)
_MESSAGE_FLAGS = _flags(MESSAGES)


def error_text(error: Any, error_message: str | None) -> str | None:
    """The error text a message stands for: the server's `error_message`.

    A flagged message with no text of its own is sent as 'error'; an unflagged one has none.
    An empty text is the app's own (its flag is `error_message IS NOT NULL`): kept as it is.
    """
    if not error:
        return None
    return "error" if error_message is None else error_message


# Columns a client may set on a message (add_message, update_message): all but its id and
# its conversation.
MESSAGE_FIELDS = frozenset(MESSAGES.names) - {"id", "conversation_id"}
