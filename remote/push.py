"""Pushing one batch of changed rows: one transaction, only real changes written.

A batch is staged with COPY, then upserted. If PostgreSQL refuses the upsert, the batch is
split in halves under savepoints until each refused row stands alone; those rows are
returned with the server's reason and the rest of the batch commits.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerr

from localstore import columns as spec
from localstore.outbox import Kind, Refusal
from remote import statements as sql
from remote.connect import UserSession, scalar
from remote.errors import UnknownUser, is_transient

# Called once the batch is written and before the remote COMMIT, with the result so far
# (acked rows and xid known): the engine records the batch as in flight there.
BeforeCommit = Callable[["BatchResult"], None]
# Called once the batch is staged, before its upsert: the remote transaction's id and the
# (id, rev) of every staged row (a superset of what will be acked).
BeforeUpsert = Callable[[str, list[tuple[str, int]]], None]


@dataclass(slots=True)
class BatchResult:
    """What the remote did with one batch."""

    acked: list[tuple[str, int]] = field(default_factory=list)  # (id, rev) now on the remote
    written: int = 0  # rows inserted or updated; the rest were already identical
    refused: list[Refusal] = field(default_factory=list)
    # ids deleted on the remote since our last pull: not revived, not acknowledged
    gone: list[str] = field(default_factory=list)
    # The remote transaction that carried the batch (xid8 as text): after a crash, its
    # status says whether the acked rows reached the remote (see localstore/inflight.py).
    xid: str | None = None


@dataclass(frozen=True, slots=True)
class _Table:
    kind: Kind
    stage: str
    copy: str
    upsert: str
    columns: tuple[str, ...]  # local column names, in COPY order after n
    gone: str  # which previously synced rows the remote no longer has


# The COPY order is the spec's (remote/statements.py stages the same columns in it).
SESSIONS = _Table(
    "conversation", sql.STAGE_SESSIONS, sql.COPY_SESSIONS, sql.UPSERT_SESSIONS,
    (*spec.CONVERSATIONS.names, "was_synced"), sql.GONE_SESSIONS,
)
MESSAGES = _Table(
    "message", sql.STAGE_MESSAGES, sql.COPY_MESSAGES, sql.UPSERT_MESSAGES,
    (*spec.MESSAGES.names, "was_synced"), sql.GONE_MESSAGES,
)


def ensure_profile(session: UserSession, email: str) -> None:
    """The user's profile row must exist before their conversations can.

    On the app's own schema the sign-up trigger creates it (and profiles.id references
    auth.users), so an existing profile is left alone; chatsync's standalone schema has no
    auth.users and the profile is created here. A foreign-key refusal means the server
    has no such user: `UnknownUser`, a permanent error.
    """
    with session.transaction() as conn:
        if conn.execute(sql.PROFILE_EXISTS, {"user_id": session.user_id}).fetchone() is not None:
            return
        try:
            with conn.transaction():  # a savepoint, so the refusal can be told apart
                conn.execute(sql.CREATE_PROFILE, {"user_id": session.user_id, "email": email})
        except pgerr.ForeignKeyViolation:
            raise UnknownUser(session.user_id) from None


def push_conversations(
    session: UserSession, rows: Sequence[dict[str, Any]], *,
    before_commit: BeforeCommit | None = None, before_upsert: BeforeUpsert | None = None,
) -> BatchResult:
    return _push(session, SESSIONS, rows, before_commit, before_upsert)


def push_messages(
    session: UserSession, rows: Sequence[dict[str, Any]], *,
    before_commit: BeforeCommit | None = None, before_upsert: BeforeUpsert | None = None,
) -> BatchResult:
    return _push(session, MESSAGES, rows, before_commit, before_upsert)


def push_deletions(session: UserSession, rows: Sequence[dict[str, Any]]) -> None:
    """Delete the tombstoned rows; messages first, then conversations (which cascade)."""
    messages = [r["id"] for r in rows if r["kind"] == "message"]
    conversations = [r["id"] for r in rows if r["kind"] == "conversation"]
    with session.transaction() as conn:
        if messages:
            conn.execute(sql.DELETE_MESSAGES, {"ids": messages})
        if conversations:
            conn.execute(sql.DELETE_SESSIONS, {"ids": conversations})


def _push(
    session: UserSession, table: _Table, rows: Sequence[dict[str, Any]],
    before_commit: BeforeCommit | None, before_upsert: BeforeUpsert | None = None,
) -> BatchResult:
    result = BatchResult()
    staged: list[dict[str, Any]] = []
    for row in rows:
        problem = unstorable(row, table.columns)
        if problem:
            result.refused.append(Refusal(table.kind, row["id"], row["rev"], problem))
        else:
            staged.append(row)
    if not staged:
        return result
    with session.transaction() as conn:
        conn.execute(table.stage)
        values = operator.itemgetter(*table.columns)
        with conn.cursor().copy(table.copy) as copy:
            # Values as SQLite gave them: COPY's text for an int is str(int), and BLOBs were
            # refused above, so no per-value str() is needed.
            for n, row in enumerate(staged):
                copy.write_row((n, *values(row)))
        result.xid = str(scalar(conn, sql.CURRENT_XID))
        if before_upsert is not None:
            before_upsert(result.xid, [(r["id"], r["rev"]) for r in staged])
        written: list[str] = []
        _upsert(conn, table, staged, 0, len(staged), written, result.refused)
        if any(r["was_synced"] for r in staged):
            result.gone = sorted(r[0] for r in conn.execute(table.gone))
        left_out = {r.id for r in result.refused} | set(result.gone)
        result.acked = [(r["id"], r["rev"]) for r in staged if r["id"] not in left_out]
        result.written = len(written)
        if before_commit is not None:
            before_commit(result)
    return result


def _upsert(
    conn: psycopg.Connection, table: _Table, rows: Sequence[dict[str, Any]],
    lo: int, hi: int, written: list[str], refused: list[Refusal],
) -> None:
    try:
        with conn.transaction():  # a savepoint: a refusal undoes only this range
            cur = conn.execute(table.upsert, {"lo": lo, "hi": hi})
            written.extend(r[0] for r in cur.fetchall())
    except psycopg.Error as exc:
        if is_transient(exc):
            raise
        if hi - lo == 1:
            row = rows[lo]
            refused.append(Refusal(table.kind, row["id"], row["rev"], refusal_reason(exc)))
            return
        mid = (lo + hi) // 2
        _upsert(conn, table, rows, lo, mid, written, refused)
        _upsert(conn, table, rows, mid, hi, written, refused)


def refusal_reason(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary or str(exc)
    if isinstance(exc, pgerr.InsufficientPrivilege):
        return (
            "refused by the server's row-level security: the row belongs, or would belong, "
            f"to another account ({primary})"
        )
    if isinstance(exc, pgerr.ForeignKeyViolation):
        return f"its conversation is not on the server ({primary})"
    detail = f"; {exc.diag.message_detail}" if exc.diag.message_detail else ""
    return f"refused by the server: {primary}{detail}"


# The most tokens one message may claim. The usage analytics add every message's counts into
# per-user totals: a negative count would lower them and a huge one overflow them. No model
# comes near this bound in one message.
MAX_MESSAGE_TOKENS = 100_000_000
TOKEN_COLUMNS = frozenset({"total_tokens", "input_tokens", "output_tokens"})


def unstorable(row: dict[str, Any], columns: Sequence[str]) -> str | None:
    """Why PostgreSQL could not even receive this row, or None.

    Another SQLite writer can store text PostgreSQL cannot: NUL characters, or bytes that
    are not UTF-8 (read here as lone surrogates). With the store's checks bypassed
    (`PRAGMA ignore_check_constraints`) it can also store token counts the analytics
    cannot count.
    """
    for column in columns:
        value = row[column]
        if isinstance(value, bytes):
            return f"{column} is a BLOB, not text"
        if (column in TOKEN_COLUMNS and isinstance(value, int)
                and not 0 <= value <= MAX_MESSAGE_TOKENS):
            return (f"{column} is {value}: a message's token counts must be from 0 to "
                    f"{MAX_MESSAGE_TOKENS:,} for the usage analytics to count them")
        if not isinstance(value, str):
            continue
        if column in TIMESTAMP_COLUMNS and not _iso_timestamp(value):
            # PostgreSQL would read 'now', 'today', 'epoch' or 'infinity' as a moment of
            # its own choosing, and the remote would silently differ from the store.
            return f"{column} is not an ISO-8601 timestamp: {value[:40]!r}"
        if "\x00" in value:
            return f"{column} contains a NUL character, which PostgreSQL text cannot store"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{column} is not valid UTF-8"
    return None


# The store's timestamp columns (localstore/columns.py): PostgreSQL reads them as timestamptz.
TIMESTAMP_COLUMNS = spec.TIMESTAMPS
ISO_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}[0-9:.]*)?(Z|[+-]\d{2}(:?\d{2})?)?\Z")


def _iso_timestamp(value: str) -> bool:
    # Shape only (YYYY-MM-DD…): the server judges the range and the rest, so an impossible
    # date is refused with its own reason; words like 'now' never reach it.
    return bool(ISO_SHAPE.match(value))

