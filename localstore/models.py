"""The rows a desktop client reads and writes, as typed records."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

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
        return _from_row(cls, row)


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
        return _from_row(cls, row)


def _from_row(cls: type[T], row: Any) -> T:
    # SQLite has no boolean type: the flags come back as 0/1.
    values = {f.name: row[f.name] for f in fields(cls)}  # type: ignore[arg-type]
    for f in fields(cls):  # type: ignore[arg-type]
        if f.type in (bool, "bool"):
            values[f.name] = bool(values[f.name])
    return cls(**values)


def error_text(error: Any, error_message: str | None) -> str | None:
    """The error text a message stands for: the server's `error_message`.

    A flagged message with no text of its own is sent as 'error'; an unflagged one has none.
    An empty text is the app's own (its flag is `error_message IS NOT NULL`): kept as it is.
    """
    if not error:
        return None
    return "error" if error_message is None else error_message


# Columns a client may set on a message besides its id, conversation, role and content.
MESSAGE_FIELDS = frozenset(
    {
        "role",
        "content",
        "model",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "user_message_id",
        "content_type",
        "elapsed_time",
        "completion_id",
        "timestamp",
        "error",
        "error_message",
    }
)
