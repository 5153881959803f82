"""The synced tables' columns: the one spec the store, the push, the pull and the wire share.

Each synced table is named here once, column by column: its name in the store, its name on
the remote (PostgreSQL), its kind, whether the store allows NULL, whether it is the
client's (compared and overwritten by a push; compared by a pull), and what the store takes
when the remote has NULL. Everything that lists columns is derived from this module: the
outbox's select lists (localstore/outbox.py), the inbox's writes (localstore/inbox.py), the
push's staging table, COPY and upsert (remote/statements.py, remote/push.py), the pull's
select lists and normalisation (remote/pull.py), the sync server's row shapes
(remote/server/wire.py), and the sets of timestamp columns. tests/test_columns.py checks
the spec against the real SQLite store and the real PostgreSQL tables, and against the
typed row models (localstore/models.py), so a column added to a migration but not here fails.

Adding a synced column is then: the migrations (localstore/*.sql and
remote/migrations/*.sql), a `Column` here, and the field on the row model.

Names here are constants, never input: statements are built from them once, at import
(PostgreSQL's with psycopg.sql.Identifier). Every name is checked to be a plain lowercase
SQL identifier. This module imports nothing heavy: `chatsync status` loads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# What a column holds. The store keeps every kind as SQLite TEXT or INTEGER (`SQLITE_TYPE`);
# the remote's own type is in `PG_TYPES`.
ColumnKind = Literal["text", "uuid", "timestamp", "int", "bool", "json", "numeric"]
Kind = Literal["conversation", "message"]  # the sync's name for a table's rows

SQLITE_TYPE: dict[ColumnKind, str] = {
    "text": "TEXT", "uuid": "TEXT", "timestamp": "TEXT", "int": "INTEGER", "bool": "INTEGER",
    "json": "TEXT", "numeric": "TEXT",
}
# PostgreSQL's names for each kind (information_schema.columns.data_type).
PG_TYPES: dict[ColumnKind, frozenset[str]] = {
    "text": frozenset({"text", "character varying"}),
    "uuid": frozenset({"uuid"}),
    "timestamp": frozenset({"timestamp with time zone"}),
    "int": frozenset({"integer"}),
    "bool": frozenset({"boolean"}),
    "json": frozenset({"jsonb", "json"}),
    "numeric": frozenset({"numeric"}),
}
# A push stages every value as text (COPY's text format) and casts it in the upsert, so a
# value PostgreSQL refuses fails in the upsert, per row, not in the COPY for the batch.
STAGE_TYPE = "text"
# The upsert's cast of a staged value to the remote column's kind (None: text, no cast).
PUSH_CAST: dict[ColumnKind, str | None] = {
    "text": None, "uuid": "uuid", "timestamp": "timestamptz", "int": "int", "bool": "boolean",
    "json": "jsonb", "numeric": "numeric",
}
# The pull's cast of a remote value (None: as psycopg reads it). A uuid is read as
# PostgreSQL's text (lowercase), as the store keeps it.
PULL_CAST: dict[ColumnKind, str | None] = {
    "text": None, "uuid": "text", "timestamp": None, "int": None, "bool": None,
    "json": None, "numeric": None,
}

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Column:
    """One synced column: in the store, and on the remote unless `remote` is None."""

    name: str  # the store's column (and the key of a row dict everywhere)
    kind: ColumnKind
    nullable: bool  # may the store hold NULL
    # The remote's column; None: the store's own, carried by another column (`error`).
    remote: str | None
    # The client's: a push over an existing remote row overwrites it, and only a change of
    # it is a change (the upsert's IS DISTINCT FROM, the inbox's comparison). False for the
    # key and for a column the server rewrites (a conversation's updated_at).
    compared: bool = True
    default: str | int | None = None  # what the store takes when the remote has NULL
    # SQL over other columns, `{name}` standing for a column of this table, when the value
    # is not the column itself: the upsert's value from the staged columns (push_sql), the
    # pull's from the remote row's (pull_sql). Constants, never input.
    push_sql: str | None = None
    pull_sql: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.remote is not None:
            _check_name(self.remote)

    @property
    def stage(self) -> str:
        """Its column in the push's staging table: the remote's name, else the store's."""
        return self.remote or self.name


@dataclass(frozen=True, slots=True)
class ServerColumn:
    """A column only the server writes (statistics): pulled, kept aside, never pushed."""

    name: str  # where the store keeps it (server_conversation_stats)
    remote: str  # the remote's column, and the key of a pulled row dict
    kind: ColumnKind
    default: str | int | None = None  # what the store takes when the remote has NULL

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.remote)


@dataclass(frozen=True, slots=True)
class RemoteColumn:
    """A remote column chatsync neither pushes nor pulls (the app's own)."""

    remote: str
    kind: ColumnKind

    def __post_init__(self) -> None:
        _check_name(self.remote)


# The store's own bookkeeping columns of every synced table (localstore/schema.sql).
BOOKKEEPING = ("rev", "synced_rev", "dirty")


@dataclass(frozen=True, slots=True)
class Table:
    """One synced table, in the store and on the remote."""

    kind: Kind
    name: str  # the store's table
    remote: str  # the remote's table, in schema public
    columns: tuple[Column, ...]  # the synced columns, `id` first, in the order pushed
    server: tuple[ServerColumn, ...] = ()  # pulled only
    ignored: tuple[RemoteColumn, ...] = ()  # neither

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.remote)
        if self.columns[0].name != "id" or self.columns[0].compared:
            raise ValueError(f"{self.name}: the key `id` comes first and is not compared")

    @property
    def names(self) -> tuple[str, ...]:
        """The store's synced columns, as the outbox reads them and the inbox inserts."""
        return tuple(c.name for c in self.columns)

    @property
    def compared(self) -> tuple[str, ...]:
        """The client's columns: compared, and written by an update."""
        return tuple(c.name for c in self.columns if c.compared)

    @property
    def timestamps(self) -> frozenset[str]:
        """The store's names of its timestamp columns."""
        return frozenset(c.name for c in self.columns if c.kind == "timestamp")


CONVERSATIONS = Table(
    "conversation", "conversations", "chat_sessions",
    (
        Column("id", "text", False, "id", compared=False),
        Column("user_id", "uuid", True, "user_id"),
        Column("title", "text", False, "title", default="New Chat"),
        Column("created_at", "timestamp", False, "created_at"),
        # Sent with a new conversation; the server's trigger rewrites it on every update, so
        # it is never compared (a pull keeps it as server_updated_at too).
        Column("updated_at", "timestamp", False, "updated_at", compared=False),
        Column("is_active", "bool", False, "is_active", default=1),
    ),
    server=(
        ServerColumn("message_count", "message_count", "int", default=0),
        ServerColumn("total_tokens", "total_tokens", "int", default=0),
        ServerColumn("last_model", "last_model", "text"),
        ServerColumn("last_message_preview", "last_message_preview", "text"),
        ServerColumn("last_message_timestamp", "last_message_timestamp", "timestamp"),
        ServerColumn("server_updated_at", "updated_at", "timestamp"),
        ServerColumn("last_activity", "last_activity", "timestamp"),
    ),
)

MESSAGES = Table(
    "message", "messages", "chat_messages",
    (
        Column("id", "text", False, "id", compared=False),
        Column("conversation_id", "text", False, "session_id"),
        Column("role", "text", False, "role"),
        Column("content", "text", False, "content"),
        Column("model", "text", True, "model"),
        Column("total_tokens", "int", False, "total_tokens", default=0),
        Column("input_tokens", "int", False, "input_tokens", default=0),
        Column("output_tokens", "int", False, "output_tokens", default=0),
        Column("user_message_id", "text", True, "user_message_id"),
        Column("content_type", "text", False, "content_type", default="text"),
        Column("elapsed_time", "int", False, "elapsed_time", default=0),
        Column("completion_id", "text", True, "completion_id"),
        Column("timestamp", "timestamp", False, "message_timestamp"),
        # The flag clients set. The app has no such column: its flag is
        # `error_message IS NOT NULL`, and the flag travels in error_message.
        Column("error", "bool", False, None, pull_sql="{error_message} IS NOT NULL"),
        # The app's error text, kept beside the flag (pulled), so a device's edit of the
        # content never replaces it: a flagged message is sent with its text, or 'error'
        # when it has none, and an unflagged one with none.
        Column("error_message", "text", True, "error_message",
               push_sql="CASE WHEN {error}::boolean THEN coalesce({error_message}, 'error') END"),
    ),
    ignored=(RemoteColumn("is_streaming", "bool"), RemoteColumn("metadata", "json")),
)

TABLES: dict[Kind, Table] = {"conversation": CONVERSATIONS, "message": MESSAGES}

# Every key of a pulled row that holds a timestamp (the synced columns by the store's name,
# the server's by the remote's), as remote/pull.py reads them.
PULLED_TIMESTAMPS = frozenset(
    {c.name for t in TABLES.values() for c in t.columns if c.kind == "timestamp"}
    | {c.remote for t in TABLES.values() for c in t.server if c.kind == "timestamp"}
)
# The store's synced timestamp columns, of either table.
TIMESTAMPS = CONVERSATIONS.timestamps | MESSAGES.timestamps
