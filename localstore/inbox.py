"""Applying pulled remote rows to the local store, and the conflict policy.

Every batch is one local write transaction with `sync_meta.applying_remote = 1`, so the
change-tracking triggers skip these writes: pulled rows are not dirty, leave no tombstones
and are never pushed back. A pulled row equal to the local one (compared on the columns the
client owns; timestamps as instants) writes nothing.

Conflict policy (the same on every device; the pull runs before the push of each sync):

- deletion wins over an edit, both ways: a row deleted remotely is removed here even if it
  was edited here (`deleted-remotely`); a row deleted here is not brought back by a remote
  edit, and the pending delete is pushed (`deleted-locally`);
- edit against edit: the edit that reaches the server last wins. A local edit not yet
  pushed is kept (`local-edit-kept`) and the push that follows sends it over the server's
  version; the other device then pulls it. Every device ends with the server's final row.

A remote change counts as a conflict only if it differs from the version the local edit was
based on (`sync_base`: the row as it was when last in agreement with the remote, kept by
triggers when a client first changes a clean row), so the echo of our own push, or the
server refreshing a conversation's statistics, is not one. Each conflict is recorded in
`conflicts` with both versions, so nothing is lost silently.

A pulled row the store cannot hold (the server's schema accepts more than the store's
checks: negative token counts, 'infinity' timestamps, ids longer than 255 characters…) never
blocks a sync: when a batch is refused, its rows are written one by one under savepoints,
and each one the store's own constraints refuse goes to `held_rows` with the constraint's
reason and the row as pulled. The rest applies and the cursor advances. A held row is
retried when the remote row changes (the pull brings it again), when its conversation
arrives (a message held for want of it), and is dropped when the row is deleted remotely.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from localstore import columns as spec
from localstore.models import error_text
from localstore.outbox import Kind
from localstore.timestamps import instant
from localstore.transaction import write_transaction

# The client-owned columns a pulled row is compared on (localstore/columns.py). A
# conversation's updated_at is rewritten by the server on every write, so it is taken on
# insert but never compared.
CONVERSATION_COMPARED = spec.CONVERSATIONS.compared
MESSAGE_COMPARED = spec.MESSAGES.compared
# Compared as instants, so the same moment written two ways is no change.
TIME_COLUMNS = spec.TIMESTAMPS
# Compared lowercased, as PostgreSQL prints a uuid.
UUID_COLUMNS = frozenset(
    c.name for t in spec.TABLES.values() for c in t.columns if c.kind == "uuid"
)
# The server's statistics of a conversation: where the store keeps them, and the pulled
# row's key for each.
STATS = tuple((c.name, c.remote) for c in spec.CONVERSATIONS.server)
STATS_COLUMNS = tuple(name for name, _ in STATS)

GET_CURSOR = "SELECT snapshot FROM pull_cursor WHERE user_id = ?"
SET_CURSOR = """
INSERT INTO pull_cursor (user_id, snapshot) VALUES (:user_id, :snapshot)
ON CONFLICT (user_id) DO UPDATE SET snapshot = excluded.snapshot,
    pulled_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
"""
APPLYING = "UPDATE sync_meta SET applying_remote = ?"
_IDS = "id IN (SELECT value FROM json_each(?))"  # ? is a JSON array of ids
LOCAL_ROWS = "SELECT {columns}, rev, synced_rev FROM {table} WHERE " + _IDS  # see _table
TOMBSTONED = "SELECT id FROM tombstones WHERE kind = ? AND " + _IDS
BASES = "SELECT id, version FROM sync_base WHERE kind = ? AND " + _IDS
EXISTING_CONVERSATIONS = "SELECT id FROM conversations WHERE " + _IDS
SET_BASE = "INSERT OR REPLACE INTO sync_base (kind, id, version) VALUES (?, ?, ?)"
DROP_BASE = "DELETE FROM sync_base WHERE kind = ? AND id = ?"
DROP_TOMBSTONE = "DELETE FROM tombstones WHERE kind = ? AND id = ?"
DROP_QUARANTINE = "DELETE FROM quarantine WHERE kind = ? AND id = ?"
# A conversation deleted remotely takes its messages with it (the cascade runs with the
# triggers off): their quarantine and held entries go too.
DROP_MESSAGE_QUARANTINE = """
DELETE FROM quarantine WHERE kind = 'message'
  AND id IN (SELECT id FROM messages WHERE conversation_id = ?)
"""
DROP_HELD = "DELETE FROM held_rows WHERE kind = ? AND " + _IDS
DROP_HELD_MESSAGES_OF = "DELETE FROM held_rows WHERE kind = 'message' AND conversation_id = ?"
HOLD = """
INSERT OR REPLACE INTO held_rows (kind, id, conversation_id, reason, remote_version)
VALUES (:kind, :id, :conversation_id, :reason, :remote_version)
"""
HELD_CONVERSATIONS = "SELECT id, reason FROM held_rows WHERE kind = 'conversation' AND " + _IDS
HELD_MESSAGES_OF = """
SELECT remote_version FROM held_rows
WHERE kind = 'message' AND conversation_id IN (SELECT value FROM json_each(?))
"""
HELD_ROWS = "SELECT kind, id, conversation_id, reason, at FROM held_rows ORDER BY at, kind, id"
TOMBSTONED_CONVERSATIONS = "SELECT id FROM tombstones WHERE kind = 'conversation' AND " + _IDS
HAS_DIRTY_MESSAGES = (
    "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ? AND rev > synced_rev)"
)
DROP_MESSAGE_BASES = """
DELETE FROM sync_base WHERE kind = 'message'
  AND id IN (SELECT id FROM messages WHERE conversation_id = ?)
"""
RECORD_CONFLICT = """
INSERT INTO conflicts (kind, id, resolution, local_version, remote_version)
VALUES (?, ?, ?, ?, ?)
"""
GET_RESUME = "SELECT horizon, after_message_id FROM pull_resume WHERE user_id = ?"
SET_RESUME = """
INSERT OR REPLACE INTO pull_resume (user_id, horizon, after_message_id) VALUES (?, ?, ?)
"""
DROP_RESUME = "DELETE FROM pull_resume WHERE user_id = ?"
CONFLICT_COUNTS = "SELECT resolution, count(*) FROM conflicts GROUP BY resolution"
# A re-sync (the remote's feed no longer covers our cursor): the user's CLEAN local rows the
# full pull did not bring are gone remotely. Dirty rows, and conversations holding dirty
# messages, stay for the push. Messages are judged one page range at a time, in the byte
# order of ids (SQLite's BINARY, as the remote pages them for a re-sync).
UNSEEN_CLEAN_CONVERSATIONS = """
SELECT c.id FROM conversations AS c
WHERE c.user_id = :user_id AND c.rev <= c.synced_rev
  AND c.id NOT IN (SELECT value FROM json_each(:seen))
  AND NOT EXISTS (SELECT 1 FROM messages AS m
                  WHERE m.conversation_id = c.id AND m.rev > m.synced_rev)
"""
UNSEEN_CLEAN_MESSAGES = """
SELECT m.id FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE c.user_id = :user_id AND m.rev <= m.synced_rev
  AND (:after IS NULL OR m.id > :after) AND (:upto IS NULL OR m.id <= :upto)
  AND m.id NOT IN (SELECT value FROM json_each(:seen))
"""
UPSERT_STATS = f"""
INSERT INTO server_conversation_stats (conversation_id, {", ".join(STATS_COLUMNS)})
VALUES (:id, {", ".join(":" + c for c in STATS_COLUMNS)})
ON CONFLICT (conversation_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in STATS_COLUMNS)}
WHERE {" OR ".join(f"{c} IS NOT excluded.{c}" for c in STATS_COLUMNS)}
"""


@dataclass(frozen=True, slots=True)
class _Table:
    """A synced table's statements, built once from its spec (names are constants)."""

    kind: Kind
    name: str
    columns: tuple[str, ...]  # written on insert
    compared: tuple[str, ...]  # compared and written on update
    local_rows: str  # the local rows of a JSON array of ids, with rev and synced_rev
    insert: str
    update: str
    delete: str


def _table(table: spec.Table) -> _Table:
    cols = ", ".join(table.names)
    values = ", ".join(":" + c for c in table.names)
    sets = ", ".join(f"{c} = :{c}" for c in table.compared)
    return _Table(
        table.kind, table.name, table.names, table.compared,
        local_rows=LOCAL_ROWS.format(columns=cols, table=table.name),
        # synced_rev -1: clean, and known to the remote (see localstore/schema.sql), so an
        # edit of it is never pushed as a new row should the remote delete it meanwhile.
        insert=f"INSERT INTO {table.name} ({cols}, rev, synced_rev) VALUES ({values}, -1, -1)",
        update=f"UPDATE {table.name} SET {sets} WHERE id = :id",
        delete=f"DELETE FROM {table.name} WHERE id = ?",
    )


CONVERSATIONS = _table(spec.CONVERSATIONS)
MESSAGES = _table(spec.MESSAGES)


@dataclass(slots=True)
class Applied:
    """What applying pulled rows did locally."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: int = 0  # a message whose conversation is not here (deleted here)
    held: int = 0  # rows the store cannot hold as they are: in held_rows, with the reason

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted

    def add(self, other: Applied) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.deleted += other.deleted
        self.conflicts += other.conflicts
        self.skipped += other.skipped
        self.held += other.held


class Inbox:
    """The pull's side of the store: the cursor, applying remote rows, the conflict log."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def cursor(self, user_id: str) -> str | None:
        """The remote snapshot (`xmin:xmax:xip,…`) of the last pull, or None: pull all."""
        row = self.conn.execute(GET_CURSOR, (user_id,)).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, user_id: str, snapshot: str) -> None:
        with write_transaction(self.conn):
            self.conn.execute(SET_CURSOR, {"user_id": user_id, "snapshot": snapshot})

    def conflict_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.conn.execute(CONFLICT_COUNTS)}

    def held(self) -> list[dict[str, Any]]:
        """The pulled rows this store could not hold, oldest first, with the reason."""
        return [dict(r) for r in self.conn.execute(HELD_ROWS)]

    def apply_conversations(
        self, rows: Sequence[dict[str, Any]], *, resume: Resume | None = None
    ) -> Applied:
        """Apply pulled conversations, then retry the messages held for want of them."""
        with _applying_remote(self.conn):
            return self._conversations(rows, resume)

    def _conversations(self, rows: Sequence[dict[str, Any]], resume: Resume | None) -> Applied:
        batch = _Batch(self.conn, CONVERSATIONS, rows)
        done = batch.apply()
        if batch.arrived:
            waiting = [json.loads(r[0]) for r in self.conn.execute(
                HELD_MESSAGES_OF, (json.dumps(batch.arrived),))]
            if waiting:
                done.add(_Batch(self.conn, MESSAGES, waiting).apply())
        if resume is not None:
            resume.save(self.conn)
        return done

    # --- a re-sync: the full pull that also drops what the remote no longer has ----------

    def resync_conversations(
        self, user_id: str, rows: Sequence[dict[str, Any]], *, resume: Resume
    ) -> Applied:
        """All of the user's remote conversations: the clean local ones not among them are
        removed (as a remote delete), then these are applied; one transaction."""
        with _applying_remote(self.conn):
            gone = [r[0] for r in self.conn.execute(UNSEEN_CLEAN_CONVERSATIONS, {
                "user_id": user_id.lower(), "seen": json.dumps([r["id"] for r in rows])})]
            done = _Batch(self.conn, CONVERSATIONS, [{"id": i, "deleted": 1} for i in gone]
                          ).apply()
            done.add(self._conversations(rows, resume))
            return done

    def resync_messages(
        self, user_id: str, rows: Sequence[dict[str, Any]], *, after: str | None,
        upto: str | None, resume: Resume | None,
    ) -> Applied:
        """One page of the re-sync's messages, ids in (*after*, *upto*] (None: unbounded):
        the clean local messages of that range not in the page are removed, the page is
        applied and *resume* saved; one transaction, so an interruption redoes the range."""
        with _applying_remote(self.conn):
            gone = [r[0] for r in self.conn.execute(UNSEEN_CLEAN_MESSAGES, {
                "user_id": user_id.lower(), "after": after, "upto": upto,
                "seen": json.dumps([r["id"] for r in rows])})]
            done = _Batch(self.conn, MESSAGES, [{"id": i, "deleted": 1} for i in gone]).apply()
            done.add(_Batch(self.conn, MESSAGES, rows).apply())
            if resume is not None:
                resume.save(self.conn)
            return done

    def apply_messages(
        self, rows: Sequence[dict[str, Any]], *, resume: Resume | None = None
    ) -> Applied:
        """Apply pulled messages; *resume* is recorded in the same transaction."""
        with _applying_remote(self.conn):
            done = _Batch(self.conn, MESSAGES, rows).apply()
            if resume is not None:
                resume.save(self.conn)
            return done

    def apply_gone(self, kind: Kind, ids: Sequence[str]) -> Applied:
        """Rows a push found deleted on the server: apply them as remote deletes now.

        Deletion wins, as for a pulled delete: a row edited here records a
        `deleted-remotely` conflict with its local version. Waiting for the pull's delete
        instead could wait forever (its feed entry may have been taken over).
        """
        rows = [{"id": i, "deleted": 1} for i in ids]
        if not rows:
            return Applied()
        with _applying_remote(self.conn):
            return _Batch(self.conn, CONVERSATIONS if kind == "conversation" else MESSAGES,
                          rows).apply()

    # --- resuming an interrupted first pull ---------------------------------------------

    def resume_point(self, user_id: str) -> tuple[str, str | None] | None:
        """(horizon, last message id applied) of a first pull that was interrupted."""
        row = self.conn.execute(GET_RESUME, (user_id,)).fetchone()
        return None if row is None else (str(row[0]), row[1])

    def finish_pull(self, user_id: str, horizon: str) -> None:
        """Store the cursor and forget any resume point, in one transaction."""
        with write_transaction(self.conn):
            self.conn.execute(SET_CURSOR, {"user_id": user_id, "snapshot": horizon})
            self.conn.execute(DROP_RESUME, (user_id,))


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a first pull stands: saved with each applied page, so a restart goes on."""

    user_id: str
    horizon: str  # the snapshot of the pull that started it: the cursor once it is done
    after_message_id: str | None

    def save(self, conn: sqlite3.Connection) -> None:
        conn.execute(SET_RESUME, (self.user_id, self.horizon, self.after_message_id))


class _Batch:
    """One batch of pulled rows of one kind, applied inside the caller's transaction."""

    def __init__(
        self, conn: sqlite3.Connection, table: _Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        self.conn, self.table, self.rows = conn, table, rows
        self.by_id = {r["id"]: r for r in rows}
        ids = json.dumps([r["id"] for r in rows])
        self.local = {r["id"]: dict(r) for r in conn.execute(table.local_rows, (ids,))}
        self.tombstoned = {r[0] for r in conn.execute(TOMBSTONED, (table.kind, ids))}
        self.bases = {r[0]: json.loads(r[1]) for r in conn.execute(BASES, (table.kind, ids))}
        # Every row pulled again is judged afresh: its old held entry goes, and comes back
        # below only if the store still cannot hold this version.
        conn.execute(DROP_HELD, (table.kind, ids))
        self.parents: set[str] = set()
        self.deleted_parents: set[str] = set()
        self.held_parents: dict[str, str] = {}
        if table is MESSAGES:
            wanted = json.dumps(sorted({r["conversation_id"] for r in rows if not r["deleted"]}))
            self.parents = {r[0] for r in conn.execute(EXISTING_CONVERSATIONS, (wanted,))}
            self.deleted_parents = {r[0] for r in conn.execute(TOMBSTONED_CONVERSATIONS,
                                                               (wanted,))}
            self.held_parents = dict(conn.execute(HELD_CONVERSATIONS, (wanted,)).fetchall())
        self.done = Applied()
        self.inserts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.arrived: list[str] = []  # conversations inserted by this batch

    def apply(self) -> Applied:
        for remote in self.rows:
            local = self.local.get(remote["id"])
            if remote["deleted"]:
                self._remote_delete(remote["id"], local)
            elif local is None:
                self._remote_new(remote)
            else:
                self._remote_edit(remote, local)
        inserted = self._write(self.table.insert, self.inserts)
        self.done.inserted += len(inserted)
        self.done.updated += len(self._write(self.table.update, self.updates))
        if self.table is CONVERSATIONS:
            self.arrived = inserted
            # Not for a conversation deleted here and still tombstoned: it is not local.
            live = json.dumps([r["id"] for r in self.rows if not r["deleted"]])
            present = {r[0] for r in self.conn.execute(EXISTING_CONVERSATIONS, (live,))}
            stats = [_stats(r) for r in self.rows if not r["deleted"] and r["id"] in present]
            self.conn.executemany(UPSERT_STATS, stats)
        return self.done

    def _write(self, sql: str, rows: list[dict[str, Any]]) -> list[str]:
        """Write *rows*; those the store refuses are held. Returns the ids written."""
        if not rows:
            return []
        self.conn.execute("SAVEPOINT pulled_batch")
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.IntegrityError:
            # Some row breaks a constraint: find which, one savepoint per row.
            self.conn.execute("ROLLBACK TO pulled_batch")
            self.conn.execute("RELEASE pulled_batch")
            return [row["id"] for row in rows if self._write_one(sql, row)]
        self.conn.execute("RELEASE pulled_batch")
        return [row["id"] for row in rows]

    def _write_one(self, sql: str, row: dict[str, Any]) -> bool:
        self.conn.execute("SAVEPOINT pulled_row")
        try:
            self.conn.execute(sql, row)
        except sqlite3.IntegrityError as exc:
            self.conn.execute("ROLLBACK TO pulled_row")
            self.conn.execute("RELEASE pulled_row")
            self._hold(self.by_id[row["id"]], _constraint(exc))
            return False
        self.conn.execute("RELEASE pulled_row")
        return True

    def _hold(self, remote: dict[str, Any], reason: str) -> None:
        self.conn.execute(HOLD, {
            "kind": self.table.kind, "id": remote["id"],
            "conversation_id": remote.get("conversation_id"), "reason": reason,
            "remote_version": json.dumps(remote, default=str),
        })
        self.done.held += 1

    def _remote_delete(self, row_id: str, local: dict[str, Any] | None) -> None:
        kind = self.table.kind
        # Whatever was waiting on this row locally goes with it, local copy or not.
        self.conn.execute(DROP_QUARANTINE, (kind, row_id))
        if kind == "conversation":
            self.conn.execute(DROP_HELD_MESSAGES_OF, (row_id,))
        if local is None:
            # Deleted on both sides: nothing left to push.
            self.conn.execute(DROP_TOMBSTONE, (kind, row_id))
            return
        dirty = local["rev"] > local["synced_rev"]
        if kind == "conversation":
            dirty = dirty or bool(self.conn.execute(HAS_DIRTY_MESSAGES, (row_id,)).fetchone()[0])
            self.conn.execute(DROP_MESSAGE_BASES, (row_id,))
            self.conn.execute(DROP_MESSAGE_QUARANTINE, (row_id,))
        if dirty:
            self._conflict(row_id, "deleted-remotely", local, None)
        self.conn.execute(self.table.delete, (row_id,))
        self.conn.execute(DROP_BASE, (kind, row_id))
        self.done.deleted += 1

    def _orphan(self, remote: dict[str, Any]) -> bool:
        """A message whose conversation is not here: skipped or held. True if so."""
        if self.table is not MESSAGES or remote["conversation_id"] in self.parents:
            return False
        parent = remote["conversation_id"]
        if parent in self.deleted_parents:
            # Deleted here: deletion wins, and the conversation's delete is pushed next.
            self.done.skipped += 1
        elif parent in self.held_parents:
            self._hold(remote, f"its conversation {parent} is held: {self.held_parents[parent]}")
        else:
            self._hold(remote, f"its conversation {parent} is not in this store")
        return True

    def _remote_new(self, remote: dict[str, Any]) -> None:
        row_id = remote["id"]
        if row_id in self.tombstoned:
            # Deleted here: deletion wins, the tombstone is pushed next.
            self._conflict_unless_base(row_id, "deleted-locally", None, remote)
            return
        if self._orphan(remote):
            return
        self.inserts.append({c: remote[c] for c in self.table.columns})

    def _remote_edit(self, remote: dict[str, Any], local: dict[str, Any]) -> None:
        row_id, kind = remote["id"], self.table.kind
        dirty = local["rev"] > local["synced_rev"]
        if _same(local, remote, self.table.compared):
            # Nothing to do; a dirty row stays dirty and its push is a no-op upsert.
            return
        if self._orphan(remote):
            return
        if not dirty:
            self.updates.append({"id": row_id, **{c: remote[c] for c in self.table.compared}})
            self.conn.execute(DROP_BASE, (kind, row_id))
            return
        base = self.bases.get(row_id)
        if base is not None and _same(local, base, self.table.compared):
            # Only what the remote does not compare changed here (a conversation's
            # updated_at, bumped by a new message): the remote's edit is taken, not
            # overwritten, and the row stays dirty for the rest.
            self.updates.append({"id": row_id, **{c: remote[c] for c in self.table.compared}})
            version = json.dumps({c: remote[c] for c in self.table.compared})
            self.conn.execute(SET_BASE, (kind, row_id, version))
            return
        # Both changed: the local edit is kept and pushed over the server's version.
        self._conflict_unless_base(row_id, "local-edit-kept", local, remote)

    def _conflict_unless_base(
        self, row_id: str, resolution: str, local: dict[str, Any] | None,
        remote: dict[str, Any],
    ) -> None:
        kind = self.table.kind
        base = self.bases.get(row_id)
        if base is None:
            # The row was never in agreement with the remote since its last push (created
            # here, or edited while its push was in flight): the remote version is our own.
            return
        if _same(base, remote, self.table.compared):
            return  # the remote has not changed since our edit's base: not a conflict
        self._conflict(row_id, resolution, local, remote)
        # This remote version is now the one our edit overrides: seeing it again (until
        # our push lands) is not another conflict.
        version = json.dumps({c: remote[c] for c in self.table.compared})
        self.conn.execute(SET_BASE, (kind, row_id, version))

    def _conflict(
        self, row_id: str, resolution: str, local: dict[str, Any] | None,
        remote: dict[str, Any] | None,
    ) -> None:
        def version(row: dict[str, Any] | None) -> str | None:
            return None if row is None else json.dumps({c: row[c] for c in self.table.columns
                                                        if c in row})
        self.conn.execute(
            RECORD_CONFLICT, (self.table.kind, row_id, resolution, version(local), version(remote))
        )
        self.done.conflicts += 1


def _constraint(exc: sqlite3.IntegrityError) -> str:
    """The store's reason, as the constraint names it."""
    text = str(exc)
    for prefix in ("CHECK constraint failed: ", "NOT NULL constraint failed: "):
        if text.startswith(prefix):
            rest = text[len(prefix):]
            return rest if prefix.startswith("CHECK") else f"{rest} is required"
    if text.startswith("FOREIGN KEY"):
        return "its conversation is not in this store"
    return text


def _same(a: dict[str, Any], b: dict[str, Any], columns: Sequence[str]) -> bool:
    if "error_message" in columns and error_text(a.get("error"), a.get("error_message")) != (
            error_text(b.get("error"), b.get("error_message"))):
        return False
    return all(_value(c, a.get(c)) == _value(c, b.get(c)) for c in columns
               if c != "error_message")


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in TIME_COLUMNS:
        return instant(value)
    if column in UUID_COLUMNS:
        return str(value).lower()
    return value


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], **{name: row[key] for name, key in STATS}}


@contextmanager
def _applying_remote(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction the change-tracking triggers ignore (reset before commit)."""
    with write_transaction(conn):
        conn.execute(APPLYING, (1,))
        yield
        conn.execute(APPLYING, (0,))
