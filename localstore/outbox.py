"""The sync engine's side of the store: what is pending, marking it synced, quarantine.

Pending rows are read in pages by rev through the partial `*_pending` indexes, so the cost
of finding them grows with the number of dirty rows, never with the size of the store.

Ids are bound through `CAST(? AS TEXT)` as their stored bytes (`sql_text`): another client
may have stored an id that is not UTF-8, which Python reads with lone surrogates and SQLite
would refuse to bind as a str. Such a row is then quarantined like any other, by its id.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from localstore.columns import CONVERSATIONS, MESSAGES
from localstore.columns import Kind as Kind
from localstore.transaction import write_transaction

# The synced columns, as pushed (localstore/columns.py).
CONVERSATION_COLUMNS = CONVERSATIONS.names
MESSAGE_COLUMNS = MESSAGES.names

# SQLite's planner would rather walk all of a user's conversations (by user_id) than the
# few dirty rows; `+c.user_id` and CROSS JOIN keep it on the partial pending indexes.

# Rows the signed-in user may push: their own, changed, and not quarantined at this rev.
# Changed up to :upto (the counter when the sync began): a conversation edited while its
# push is in flight goes at the next sync, so a client editing it constantly cannot keep
# one sync going forever.
PENDING_CONVERSATIONS = f"""
SELECT {", ".join(CONVERSATION_COLUMNS)}, c.synced_rev <> 0 AS was_synced, rev
FROM conversations AS c
WHERE c.rev > c.synced_rev AND c.rev > :after AND c.rev <= :upto AND +c.user_id = :user_id
  AND NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'conversation' AND q.id = c.id AND q.rev = c.rev)
ORDER BY c.rev LIMIT :limit
"""

# Messages changed up to :upto (the counter when the sync began), so that every message's
# conversation was already there when the conversations were pushed. Messages whose
# conversation is quarantined wait with it.
PENDING_MESSAGES = f"""
SELECT {", ".join("m." + c for c in MESSAGE_COLUMNS)}, m.synced_rev <> 0 AS was_synced, m.rev
FROM messages AS m
CROSS JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.rev > m.synced_rev AND m.rev > :after AND m.rev <= :upto AND c.user_id = :user_id
  AND NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'message' AND q.id = m.id AND q.rev = m.rev)
  AND NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'conversation' AND q.id = c.id AND q.rev = c.rev)
ORDER BY m.rev LIMIT :limit
"""

PENDING_TOMBSTONES = """
SELECT kind, id, rev FROM tombstones
WHERE user_id = :user_id AND rev > :after
ORDER BY rev LIMIT :limit
"""

# Compare-and-set: a row edited while its older version was in flight keeps its new rev
# and so stays dirty.
MARK_CONVERSATION = (
    "UPDATE conversations SET synced_rev = :rev WHERE id = CAST(:id AS TEXT) AND rev = :rev"
)
MARK_MESSAGE = (
    "UPDATE messages SET synced_rev = :rev WHERE id = CAST(:id AS TEXT) AND rev = :rev"
)
DROP_TOMBSTONE = (
    "DELETE FROM tombstones WHERE kind = :kind AND id = CAST(:id AS TEXT) AND rev = :rev"
)
UNQUARANTINE = "DELETE FROM quarantine WHERE kind = :kind AND id = CAST(:id AS TEXT)"
# The server now has our version: a remote version held aside (localstore/inbox.py) is
# superseded.
UNHOLD = "DELETE FROM held_rows WHERE kind = :kind AND id = CAST(:id AS TEXT)"
QUARANTINE = """
INSERT INTO quarantine (kind, id, rev, reason)
VALUES (:kind, CAST(:id AS TEXT), :rev, :reason)
ON CONFLICT (kind, id) DO UPDATE SET rev = excluded.rev, reason = excluded.reason,
    at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
"""

# A dirty message whose conversation is not in the store (written with foreign keys off)
# belongs to no one and can never be pushed: quarantined, so status shows it, instead of
# waiting unseen. Its entry goes once the conversation exists (it is then pushed as usual).
ORPHAN_PREFIX = "its conversation "
ORPHAN_SUFFIX = " does not exist in this store"
QUARANTINE_ORPHANS = """
INSERT INTO quarantine (kind, id, rev, reason)
SELECT 'message', m.id, m.rev,
       :prefix || quote(m.conversation_id) || :suffix
FROM messages AS m
WHERE m.rev > m.synced_rev
  AND NOT EXISTS (SELECT 1 FROM conversations AS c WHERE c.id = m.conversation_id)
  AND NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'message' AND q.id = m.id AND q.rev = m.rev)
ON CONFLICT (kind, id) DO UPDATE SET rev = excluded.rev, reason = excluded.reason,
    at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
"""
_UNSEEN_ORPHAN = """
SELECT 1 FROM messages AS m
WHERE m.rev > m.synced_rev
  AND NOT EXISTS (SELECT 1 FROM conversations AS c WHERE c.id = m.conversation_id)
  AND NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'message' AND q.id = m.id AND q.rev = m.rev)
"""
_ADOPTED_ORPHAN = """
SELECT 1 FROM quarantine
WHERE kind = 'message' AND reason LIKE :prefix || '%' || :suffix
  AND EXISTS (SELECT 1 FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
              WHERE m.id = quarantine.id)
"""
# A read first, so that a sync with no orphans takes no write lock and writes nothing.
ORPHANS_TO_SETTLE = f"SELECT EXISTS ({_UNSEEN_ORPHAN}) OR EXISTS ({_ADOPTED_ORPHAN})"
RELEASE_ADOPTED_ORPHANS = """
DELETE FROM quarantine
WHERE kind = 'message' AND reason LIKE :prefix || '%' || :suffix
  AND EXISTS (SELECT 1 FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
              WHERE m.id = quarantine.id)
"""

# Rows quarantined at their current rev are not pending: no sync sends them until they
# change or are released, so they count as quarantined (and messages of a quarantined
# conversation as waiting on it). Otherwise every sync would connect to send nothing.
_Q_CONV = """NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'conversation' AND q.id = c.id AND q.rev = c.rev)"""
_Q_MSG = """NOT EXISTS (SELECT 1 FROM quarantine AS q
                  WHERE q.kind = 'message' AND q.id = m.id AND q.rev = m.rev)"""
PENDING_COUNTS = f"""
SELECT
  (SELECT count(*) FROM conversations AS c
    WHERE c.rev > c.synced_rev AND +c.user_id = :user_id AND {_Q_CONV}),
  (SELECT count(*) FROM messages AS m CROSS JOIN conversations AS c ON c.id = m.conversation_id
    WHERE m.rev > m.synced_rev AND c.user_id = :user_id AND {_Q_MSG} AND {_Q_CONV}),
  (SELECT count(*) FROM tombstones WHERE user_id = :user_id),
  (SELECT min(t) FROM (
     SELECT min(c.updated_at) AS t FROM conversations AS c
      WHERE c.rev > c.synced_rev AND +c.user_id = :user_id AND {_Q_CONV}
     UNION ALL
     SELECT min(m.timestamp) FROM messages AS m CROSS JOIN conversations AS c
         ON c.id = m.conversation_id
      WHERE m.rev > m.synced_rev AND c.user_id = :user_id AND {_Q_MSG} AND {_Q_CONV}
     UNION ALL
     SELECT min(deleted_at) FROM tombstones WHERE user_id = :user_id)),
  (SELECT count(*) FROM quarantine),
  (SELECT count(*) FROM messages AS m CROSS JOIN conversations AS c ON c.id = m.conversation_id
    WHERE m.rev > m.synced_rev AND c.user_id = :user_id AND {_Q_MSG} AND NOT {_Q_CONV})
"""

ANONYMOUS_COUNT = "SELECT count(*) FROM conversations WHERE user_id IS NULL"
LAST_REV = "SELECT last_rev FROM sync_meta"


@dataclass(frozen=True, slots=True)
class Pending:
    """What waits to be pushed for one user."""

    conversations: int
    messages: int
    deletions: int
    oldest: str | None
    quarantined: int
    waiting: int = 0  # dirty messages of a quarantined conversation: sent with it

    @property
    def total(self) -> int:
        return self.conversations + self.messages + self.deletions


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: Kind
    id: str
    rev: int
    reason: str


class Outbox:
    """Reads and acknowledges pending changes on an open store connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def last_rev(self) -> int:
        return int(self.conn.execute(LAST_REV).fetchone()[0])

    def pending(self, user_id: str) -> Pending:
        row = self.conn.execute(PENDING_COUNTS, {"user_id": user_id}).fetchone()
        return Pending(*row)

    def anonymous_conversations(self) -> int:
        return int(self.conn.execute(ANONYMOUS_COUNT).fetchone()[0])

    def conversations(
        self, user_id: str, upto: int, batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        yield from self._pages(PENDING_CONVERSATIONS, {"user_id": user_id, "upto": upto},
                               batch_size)

    def messages(
        self, user_id: str, upto: int, batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        yield from self._pages(PENDING_MESSAGES, {"user_id": user_id, "upto": upto}, batch_size)

    def tombstones(self, user_id: str, batch_size: int) -> Iterator[list[dict[str, Any]]]:
        yield from self._pages(PENDING_TOMBSTONES, {"user_id": user_id}, batch_size)

    def _pages(
        self, sql: str, params: dict[str, Any], batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        # Keyset pages on rev: each page is a short read, so clients are never blocked, and
        # rows marked between pages drop out of the index without upsetting the next page.
        after = 0
        while True:
            rows = self.conn.execute(sql, {**params, "after": after, "limit": batch_size})
            page = [dict(r) for r in rows]
            if not page:
                return
            yield page
            after = page[-1]["rev"]

    def mark_synced(self, kind: Kind, acked: Iterable[tuple[str, int]]) -> int:
        """Compare-and-set `synced_rev`; returns how many rows were still at the pushed rev."""
        sql = MARK_CONVERSATION if kind == "conversation" else MARK_MESSAGE
        params = [{"id": sql_text(i), "rev": r} for i, r in acked]
        with write_transaction(self.conn):
            before = self.conn.total_changes
            self.conn.executemany(sql, params)
            marked = self.conn.total_changes - before
            keyed = [{"kind": kind, "id": p["id"]} for p in params]
            if self._has_quarantine():
                self.conn.executemany(UNQUARANTINE, keyed)
            if self._has_held():
                self.conn.executemany(UNHOLD, keyed)
        return marked

    def drop_tombstones(self, acked: Iterable[tuple[str, str, int]]) -> None:
        with write_transaction(self.conn):
            self.conn.executemany(
                DROP_TOMBSTONE, [{"kind": k, "id": sql_text(i), "rev": r} for k, i, r in acked]
            )

    def quarantine(self, refusals: Iterable[Refusal]) -> None:
        rows = [{"kind": r.kind, "id": sql_text(r.id), "rev": r.rev, "reason": r.reason}
                for r in refusals]
        if rows:
            with write_transaction(self.conn):
                self.conn.executemany(QUARANTINE, rows)

    def quarantine_orphans(self) -> int:
        """Quarantine dirty messages whose conversation is not in the store; release those
        whose conversation has arrived. Returns how many are newly quarantined."""
        params = {"prefix": ORPHAN_PREFIX, "suffix": ORPHAN_SUFFIX}
        if not self.conn.execute(ORPHANS_TO_SETTLE, params).fetchone()[0]:
            return 0
        with write_transaction(self.conn):
            if self._has_quarantine():
                self.conn.execute(RELEASE_ADOPTED_ORPHANS, params)
            return self.conn.execute(QUARANTINE_ORPHANS, params).rowcount

    def quarantined(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT kind, id, rev, reason, at FROM quarantine ORDER BY at")
        return [dict(r) for r in rows]

    def release_quarantine(self) -> int:
        """Retry every quarantined row at the next sync; returns how many."""
        with write_transaction(self.conn):
            return self.conn.execute("DELETE FROM quarantine").rowcount

    def _has_quarantine(self) -> bool:
        return self.conn.execute("SELECT 1 FROM quarantine LIMIT 1").fetchone() is not None

    def _has_held(self) -> bool:
        return self.conn.execute("SELECT 1 FROM held_rows LIMIT 1").fetchone() is not None


def sql_text(value: str) -> str | bytes:
    """*value* bindable as SQLite TEXT with `CAST(? AS TEXT)`: the bytes it was read from.

    Text read with lone surrogates (bytes that were not UTF-8, see localstore/connection.py)
    cannot be bound as a str; its original bytes, cast to TEXT, are the stored value.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
    return value
