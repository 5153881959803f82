"""Reading what changed on the remote for the signed-in user (never writing there).

The cursor is a transaction id (see `remote/migrations/0004_change_feed.sql`). A pull runs
in one REPEATABLE READ, READ ONLY transaction as the user (row-level security applies):

- the cursor is the snapshot of the previous pull (`pg_current_snapshot()` as text:
  xmin, xmax and the ids in flight then). A first pull (no cursor) reads all of the user's
  rows; a later one reads the feed entries whose transaction that snapshot could not see
  (`xid >= xmax`, or an id that was in flight) and this one can, joined to the rows'
  current state (a missing row is a delete);
- the caller stores this pull's snapshot as the next cursor once everything is applied.

A transaction in flight at one pull is in that snapshot's list, so its rows are read by a
later pull however late it commits; rows committed meanwhile by others are read at once,
not held back by an unrelated long transaction. A pull with nothing to read costs one small
indexed query.

A first pull reads messages in id order and records, with each applied page, its snapshot
and the last id applied (`pull_resume`). Interrupted, it goes on from that id in a new
snapshot, and ends by storing the *first* snapshot as the cursor: the next pull then reads
everything changed since the pull began, the rows already applied included.

Timestamps are read as PostgreSQL's text, not decoded into Python datetimes: the app's
schema accepts 'infinity', years past 9999 and BC dates, which Python cannot represent.
Those keep PostgreSQL's text, and the store's own checks decide (see localstore/inbox.py:
a row it cannot hold is held aside, never blocking the sync).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from localstore import columns as spec
from localstore.timestamps import iso, store_time
from remote.connect import UserSession, scalar

HORIZON = "SELECT pg_current_snapshot()::text AS horizon"
# Timestamps as text in one known shape (TimeZone is UTC in every chatsync transaction).
ISO_DATES = "SELECT set_config('DateStyle', 'ISO, YMD', true)"
# The pulled row's keys that hold a timestamp, from the column spec.
TIME_KEYS = spec.PULLED_TIMESTAMPS


def _defaults(table: spec.Table) -> tuple[tuple[str, Any], ...]:
    """(key, value) the store takes where the remote has NULL (localstore/columns.py)."""
    return (*((c.name, c.default) for c in table.columns if c.default is not None),
            *((c.remote, c.default) for c in table.server if c.default is not None))


CONVERSATION_DEFAULTS = _defaults(spec.CONVERSATIONS)
MESSAGE_DEFAULTS = _defaults(spec.MESSAGES)

# Entries of transactions the cursor's snapshot did not see: started at or after its xmax,
# or in flight when it was taken. Two index scans; the ids are literal parameters so the
# planner sees them (an OR, or ids from a subquery, would make it scan the table).
_UNSEEN = """
(SELECT * FROM chatsync_feed.changes
  WHERE user_id = %(user_id)s AND xid >= %(since_xmax)s::text::xid8
 UNION ALL
 SELECT * FROM chatsync_feed.changes
  WHERE user_id = %(user_id)s AND xid = ANY (%(since_xip)s::text[]::xid8[]))
"""
# Has the retention (remote/server/retention.py) removed an entry this cursor had not
# seen? Every xid below the cursor's xmin was settled when it was taken; one at or above it
# may have been unseen, so the window could miss its delete: the device must re-sync.
_STALE = """
EXISTS (SELECT 1 FROM chatsync_feed.pruned
         WHERE user_id = %(user_id)s AND xid >= %(since_xmin)s::text::xid8)
"""
# The message entries an incremental pull would read (not this origin's own), counted in
# the probe: the count the pull reports, read in the same snapshot, and when it is 0 (the
# echo of our own push: only conversations' statistics changed) the pull reads no
# messages at all. With nothing unseen it is one more empty index range.
# (A FILTER, not a WHERE: a kind or origin condition pushed down into the scan lets the
# planner walk all of the user's entries by another index, ~18 ms at 100,000 entries,
# where the window is an index range on (user_id, xid), empty when nothing changed.)
_FOREIGN_MESSAGES = f"""
(SELECT count(*) FILTER (WHERE f.kind = 'message' AND f.origin IS DISTINCT FROM %(origin)s)
  FROM {_UNSEEN} AS f)
"""
# The no-op check: is there anything in the window? One small index probe.
PROBE = f"""
SELECT pg_current_snapshot()::text AS horizon,
       EXISTS (SELECT 1 FROM {_UNSEEN} AS f) AS changed, {_STALE} AS stale,
       {_FOREIGN_MESSAGES} AS messages
"""
# The live pull's check (news_only): entries this engine wrote itself are not news, so a
# device's own push does not answer its own waiting pull. The read that follows, when
# something else is new, is the usual one (its own conversation entries included).
NEWS_PROBE = f"""
SELECT pg_current_snapshot()::text AS horizon,
       EXISTS (SELECT 1 FROM {_UNSEEN} AS f
                WHERE f.origin IS DISTINCT FROM %(origin)s) AS changed, {_STALE} AS stale,
       {_FOREIGN_MESSAGES} AS messages
"""


def _selected(table: spec.Table, alias: str) -> str:
    """The select list of a table's pulled columns but the id, keyed by the store's names
    (the server's statistics by the remote's): built once from the spec, names quoted."""
    a = sql.Identifier(alias)
    refs = {c.name: sql.SQL("{}.{}").format(a, sql.Identifier(c.remote))
            for c in table.columns if c.remote is not None}
    parts: list[sql.Composable] = []
    for c in table.columns[1:]:
        cast = spec.PULL_CAST[c.kind]
        if c.pull_sql is not None:
            value: sql.Composable = sql.SQL(c.pull_sql).format(**refs)
        elif cast is not None:
            value = sql.SQL("{}::{}").format(refs[c.name], sql.SQL(cast))
        elif c.remote == c.name:
            parts.append(refs[c.name])  # already named as the store names it
            continue
        else:
            value = refs[c.name]
        parts.append(sql.SQL("{} AS {}").format(value, sql.Identifier(c.name)))
    pulled = {c.remote for c in table.columns}
    parts += [sql.SQL("{}.{}").format(a, sql.Identifier(c.remote))
              for c in table.server if c.remote not in pulled]
    return "\n    " + sql.SQL(", ").join(parts).as_string(None) + "\n"


_SESSION_COLUMNS = _selected(spec.CONVERSATIONS, "s")
_MESSAGE_COLUMNS = _selected(spec.MESSAGES, "m")

ALL_CONVERSATIONS = f"""
SELECT s.id, false AS deleted, {_SESSION_COLUMNS}
FROM public.chat_sessions AS s WHERE s.user_id = %(user_id)s ORDER BY s.id
"""
CHANGED_CONVERSATIONS = f"""
SELECT f.id, (f.deleted OR s.id IS NULL) AS deleted, {_SESSION_COLUMNS}
FROM {_UNSEEN} AS f
LEFT JOIN public.chat_sessions AS s ON s.id = f.id AND NOT f.deleted
WHERE f.kind = 'conversation'
ORDER BY f.id
"""
# In id order, from after the last id a previous, interrupted first pull applied.
ALL_MESSAGES = f"""
SELECT m.id, false AS deleted, {_MESSAGE_COLUMNS}
FROM public.chat_messages AS m JOIN public.chat_sessions AS s ON s.id = m.session_id
WHERE s.user_id = %(user_id)s AND (%(after)s::text IS NULL OR m.id > %(after)s::text)
ORDER BY m.id
"""
# A re-sync's full pull (byte_order): in the byte order of the ids, which is the order
# SQLite's BINARY collation compares them in, whatever the database's collation, so the
# device can tell which of its rows fall between two pages (daemon/pulling.py).
ALL_MESSAGES_BYTE_ORDER = f"""
SELECT m.id, false AS deleted, {_MESSAGE_COLUMNS}
FROM public.chat_messages AS m JOIN public.chat_sessions AS s ON s.id = m.session_id
WHERE s.user_id = %(user_id)s
  AND (%(after)s::text IS NULL OR m.id COLLATE "C" > %(after)s::text COLLATE "C")
ORDER BY m.id COLLATE "C"
"""
# Messages this engine pushed itself are skipped: it has them already (a conversation's
# entry is read even then, since the push changed its server-side statistics).
# (OFFSET 0 keeps the kind and origin conditions out of the window's scan, as above.)
CHANGED_MESSAGES = f"""
SELECT f.id, (f.deleted OR m.id IS NULL) AS deleted, {_MESSAGE_COLUMNS}
FROM (SELECT * FROM {_UNSEEN} AS u OFFSET 0) AS f
LEFT JOIN public.chat_messages AS m ON m.id = f.id AND NOT f.deleted
WHERE f.kind = 'message' AND f.origin IS DISTINCT FROM %(origin)s
"""
COUNT_ALL_MESSAGES = """
SELECT count(*) FROM public.chat_messages AS m
JOIN public.chat_sessions AS s ON s.id = m.session_id
WHERE s.user_id = %(user_id)s AND (%(after)s::text IS NULL OR m.id > %(after)s::text)
"""
COUNT_ALL_MESSAGES_BYTE_ORDER = """
SELECT count(*) FROM public.chat_messages AS m
JOIN public.chat_sessions AS s ON s.id = m.session_id
WHERE s.user_id = %(user_id)s
  AND (%(after)s::text IS NULL OR m.id COLLATE "C" > %(after)s::text COLLATE "C")
"""

MESSAGE_CURSOR = "chatsync_pull_messages"


class ResyncRequired(Exception):
    """The cursor is older than the feed's retention horizon: entries it had not seen were
    pruned, so an incremental pull could miss deletes. Pull the user's rows in full instead
    (daemon/pulling.py), keeping local edits and pending deletions."""

    def __init__(self) -> None:
        super().__init__("this device's pull cursor is older than the change feed's "
                         "retention (server.feed_retention_seconds): re-syncing in full")


@dataclass(slots=True)
class Changes:
    """What one pull reads; `messages` streams, so it must be consumed inside the pull."""

    horizon: str  # this pull's snapshot: the next cursor
    full: bool
    conversations: list[dict[str, Any]]
    message_count: int
    messages: Iterator[list[dict[str, Any]]]


@contextmanager
def read_changes(
    session: UserSession, since: str | None, *, page_size: int = 5000,
    after_message_id: str | None = None, news_only: bool = False, byte_order: bool = False,
) -> Iterator[Changes | None]:
    """Yield what changed since the cursor *since* (None: everything), or None if nothing.

    The remote transaction stays open while the caller consumes `messages`, so conversations
    and messages come from one snapshot. A full read starts after *after_message_id*.
    With *news_only*, a window holding only this origin's own entries counts as nothing.
    With *byte_order* (a re-sync), a full read pages messages in the byte order of ids.
    Raises ResyncRequired when the retention pruned entries the cursor had not seen.
    """
    params: dict[str, Any] = {"user_id": session.user_id, "origin": session.origin,
                              "after": after_message_id}
    if since is not None:  # pg_snapshot text: xmin:xmax:xip,xip,...
        xmin, xmax, xip = since.split(":")
        params |= {"since_xmin": xmin, "since_xmax": xmax,
                   "since_xip": [x for x in xip.split(",") if x]}
    with _snapshot(session) as conn:
        count = 0
        if since is None:
            params["horizon"] = scalar(conn, HORIZON)
        else:
            horizon, changed, stale, count = _one(
                conn, NEWS_PROBE if news_only else PROBE, params)
            if stale:
                raise ResyncRequired
            if not changed:
                yield None
                return
            params["horizon"] = horizon
        full = since is None
        conversations = _rows(conn, ALL_CONVERSATIONS if full else CHANGED_CONVERSATIONS,
                              params)
        if not full:
            count_sql, messages_sql = None, CHANGED_MESSAGES  # counted by the probe
        elif byte_order:
            count_sql, messages_sql = COUNT_ALL_MESSAGES_BYTE_ORDER, ALL_MESSAGES_BYTE_ORDER
        else:
            count_sql, messages_sql = COUNT_ALL_MESSAGES, ALL_MESSAGES
        if count_sql is not None:
            count = int(scalar(conn, count_sql, params))
        messages: Iterator[list[dict[str, Any]]] = (
            _pages(conn, messages_sql, params, page_size) if count else iter(()))
        yield Changes(
            horizon=params["horizon"], full=full, conversations=conversations,
            message_count=int(count), messages=messages,
        )


@contextmanager
def _snapshot(session: UserSession) -> Iterator[psycopg.Connection]:
    # One snapshot for the horizon and every row, and PostgreSQL itself refuses any write.
    conn = session.conn
    saved = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
    try:
        with session.transaction() as tx:
            tx.execute(ISO_DATES)
            yield tx
    finally:
        conn.isolation_level, conn.read_only = saved


def _one(
    conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """The one row a query that always answers one gives."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def _rows(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        _timestamps_as_text(cur)
        return [_normalize(r, CONVERSATION_DEFAULTS) for r in cur.execute(sql, params)]


def _timestamps_as_text(cur: psycopg.Cursor[Any]) -> None:
    # On this cursor only: Python's datetime cannot hold every timestamptz (±infinity,
    # years past 9999, BC), and a decoding failure would fail the whole pull.
    cur.adapters.register_loader("timestamptz", TextLoader)


def _pages(
    conn: psycopg.Connection, sql: str, params: dict[str, Any], page_size: int
) -> Iterator[list[dict[str, Any]]]:
    # A server-side cursor inside the transaction: a pooler in transaction mode keeps it.
    with conn.cursor(MESSAGE_CURSOR, row_factory=dict_row) as cur:
        cur.itersize = page_size
        _timestamps_as_text(cur)
        cur.execute(sql, params)
        while page := cur.fetchmany(page_size):
            yield [_normalize(r, MESSAGE_DEFAULTS) for r in page]


def _normalize(row: dict[str, Any], defaults: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """Remote values as the local store keeps them: ISO-8601 UTC text, 0/1, defaults."""
    for key, value in row.items():
        if key in TIME_KEYS and isinstance(value, str):
            row[key] = store_time(value)
        elif isinstance(value, bool):
            row[key] = int(value)
    if row["deleted"]:
        return row
    for key, default in defaults:
        if row[key] is None:
            row[key] = default
    if "role" not in row:  # a conversation: the server's timestamps stand in for each other
        row["created_at"] = row["created_at"] or row["updated_at"] or iso(datetime.now(UTC))
        row["updated_at"] = row["updated_at"] or row["created_at"]
    return row

