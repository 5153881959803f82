"""The rows a desktop client reads and writes, as typed records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["user", "assistant", "system"]
ContentType = Literal["text", "markdown"]


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
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            title=row["title"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            is_active=bool(row["is_active"]),
            dirty=bool(row["dirty"]),
        )


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
    dirty: bool

    @classmethod
    def from_row(cls, row: Any) -> Message:
        return cls(
            id=row["id"],
            conversation_id=row["conversation_id"],
            role=row["role"],
            content=row["content"],
            model=row["model"],
            total_tokens=row["total_tokens"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            user_message_id=row["user_message_id"],
            content_type=row["content_type"],
            elapsed_time=row["elapsed_time"],
            completion_id=row["completion_id"],
            timestamp=row["timestamp"],
            error=bool(row["error"]),
            dirty=bool(row["dirty"]),
        )


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
    }
)
