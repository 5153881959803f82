"""Push batches in flight: what was sent, in which remote transaction, and settling it.

A batch's acked rows are written to `push_inflight` (kind, id, rev, xid, version) before
the remote COMMIT, and settled after it in one local transaction, each with one statement
per step for the whole batch. The version (the pushed columns, the merge base of a row
edited meanwhile) is written only when it is needed: a row still at the pushed rev is its
own version, and triggers (schema version 5) copy the old values into the entry before a
client changes or deletes such a row.

- a row still at the pushed rev is marked synced (compare-and-set, as before);
- a row edited meanwhile stays dirty, but the remote now has the pushed version: it becomes
  the row's merge base (`sync_base`) and `synced_rev` the pushed rev (the remote knows the
  row). A later remote version that differs from it is another device's edit and is
  recorded as a conflict, never silently overwritten.

After a crash between the remote COMMIT and the settle, the next sync asks the remote for
the transaction's status before it pulls (see `resolve`), instead of guessing from the
rows it pulls: a committed batch is settled as it would have been, an aborted one is
forgotten (its rows are still dirty and go again), an unknown one keeps its rows dirty with
the pushed version as their base (a differing remote is then a recorded conflict).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from localstore.inbox import CONVERSATION_COMPARED, MESSAGE_COMPARED
from localstore.outbox import Kind, sql_text
from localstore.transaction import write_transaction

COMPARED: dict[str, tuple[str, ...]] = {
    "conversation": CONVERSATION_COMPARED, "message": MESSAGE_COMPARED,
}
TABLES = {"conversation": "conversations", "message": "messages"}

RECORD = """
INSERT OR REPLACE INTO push_inflight (kind, id, rev, xid, version)
VALUES (:kind, :id, :rev, :xid, :version)
"""
XIDS = "SELECT DISTINCT xid FROM push_inflight ORDER BY xid"
OF_XID = "SELECT kind, id, rev, version FROM push_inflight WHERE xid = ?"
FORGET = "DELETE FROM push_inflight WHERE kind = :kind AND id = CAST(:id AS TEXT) AND xid = :xid"
# The row was edited after the pushed rev: the remote has the pushed rev (never lower what
# an earlier settle already recorded).
KNOWN_AT = """
UPDATE {table} SET synced_rev = :rev WHERE id = :id AND rev > :rev AND synced_rev < :rev
"""
# The pushed version is the base of a row still here (edited) or deleted here (tombstoned).
# An entry without a version is of a row not changed since it was pushed (the triggers of
# schema version 5 fill it in before any change): the row at the pushed rev is the version.
SET_BASE = """
INSERT OR REPLACE INTO sync_base (kind, id, version)
SELECT :kind, :id, v.version
FROM (SELECT coalesce(:version, (SELECT json_object({pairs}) FROM {table} AS t
                                 WHERE t.id = :id AND t.rev = :rev)) AS version) AS v
WHERE v.version IS NOT NULL
  AND (EXISTS (SELECT 1 FROM {table} WHERE id = :id)
       OR EXISTS (SELECT 1 FROM tombstones WHERE kind = :kind AND id = :id))
"""

# A batch's (id, rev) pairs, held for the set-based statements below: one statement per
# batch rather than one per row (a temporary table: the connection's own, never in the
# store file).
ACKED_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS chatsync_acked (id TEXT PRIMARY KEY, rev INTEGER NOT NULL)
"""
LOAD_ACKED = "INSERT OR REPLACE INTO temp.chatsync_acked (id, rev) VALUES (CAST(? AS TEXT), ?)"
CLEAR_ACKED = "DELETE FROM temp.chatsync_acked"
# Each acked row still at the pushed rev is recorded without its version: the row itself is
# the version as long as it stays at that rev, and the triggers of schema version 5 write
# the old values into the entry before anything changes it (localstore/inflight.sql). Only
# a row already edited since its page was read gets its version here, from the page.
RECORD_CURRENT = """
INSERT OR REPLACE INTO push_inflight (kind, id, rev, xid, version)
SELECT :kind, t.id, t.rev, :xid, NULL
FROM temp.chatsync_acked AS a JOIN {table} AS t ON t.id = a.id AND t.rev = a.rev
"""
# Compare-and-set of the whole batch (the same test as MARK_CONVERSATION / MARK_MESSAGE
# row by row): only rows still at the pushed rev; an edit made meanwhile stays dirty.
MARK_ACKED = """
UPDATE {table} SET synced_rev = rev
WHERE id IN (SELECT id FROM temp.chatsync_acked)
  AND rev = (SELECT a.rev FROM temp.chatsync_acked AS a WHERE a.id = {table}.id)
"""
# Acked rows not at the pushed rev any more (edited or deleted meanwhile): usually none.
EDITED = """
SELECT a.id, a.rev FROM temp.chatsync_acked AS a
WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = a.id AND t.rev = a.rev)
"""
VERSIONS = """
SELECT p.id, p.version FROM temp.chatsync_acked AS a
CROSS JOIN push_inflight AS p ON p.kind = :kind AND p.id = a.id AND p.xid = :xid
WHERE p.version IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = a.id AND t.rev = a.rev)
"""
UNQUARANTINE_ACKED = """
DELETE FROM quarantine WHERE kind = :kind AND id IN (SELECT id FROM temp.chatsync_acked)
"""
FORGET_ACKED = """
DELETE FROM push_inflight
WHERE kind = :kind AND xid = :xid AND id IN (SELECT id FROM temp.chatsync_acked)
"""

# pg_xact_status() answers; None: unknown (too old, or the server does not know the id).
COMMITTED, ABORTED = "committed", "aborted"


def version_of(kind: Kind, row: dict[str, Any]) -> str:
    """The compared columns of a pushed row, as JSON (the form `sync_base` keeps)."""
    return json.dumps({c: row[c] for c in COMPARED[kind]})


class Inflight:
    """Bookkeeping of push batches on an open store connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def record(
        self, kind: Kind, rows: Sequence[dict[str, Any]], acked: Iterable[tuple[str, int]],
        xid: str,
    ) -> None:
        """Before the remote COMMIT: the acked rows of *rows*, as pushed, went in *xid*."""
        acked = list(acked)
        if not acked:
            return
        with write_transaction(self.conn):
            self._load(acked)
            try:
                recorded = self.conn.execute(
                    RECORD_CURRENT.format(table=TABLES[kind]),
                    {"kind": kind, "xid": xid}).rowcount
                if recorded < len(acked):
                    # Edited since the page was read: the version pushed is the page's.
                    by_id = {r["id"]: r for r in rows}
                    moved = self.conn.execute(EDITED.format(table=TABLES[kind])).fetchall()
                    self.conn.executemany(RECORD, [
                        {"kind": kind, "id": i, "rev": rev, "xid": xid,
                         "version": version_of(kind, by_id[i])} for i, rev in moved])
            finally:
                self.conn.execute(CLEAR_ACKED)

    def settle(
        self, kind: Kind, rows: Sequence[dict[str, Any]], acked: Iterable[tuple[str, int]],
        xid: str,
    ) -> int:
        """After the remote COMMIT; returns how many rows were still at the pushed rev."""
        by_id = {r["id"]: r for r in rows}
        entries = [{"kind": kind, "id": i, "rev": rev, "xid": xid} for i, rev in acked]
        if not entries:
            return 0
        with write_transaction(self.conn):
            # The pushed version of a row edited meanwhile (its new base) is the page's.
            return self._settle(
                kind, entries, lambda i: version_of(kind, by_id[i]) if i in by_id else None)

    def forget(self, kind: Kind, ids: Iterable[str], xid: str) -> None:
        """Rows recorded in flight under *xid* that the remote did not take after all."""
        entries = [{"kind": kind, "id": sql_text(i), "xid": xid} for i in ids]
        if entries:
            with write_transaction(self.conn):
                self.conn.executemany(FORGET, entries)

    def xids(self) -> list[str]:
        return [r[0] for r in self.conn.execute(XIDS)]

    def resolve(self, xid: str, status: str | None) -> dict[str, int]:
        """Settle or forget the rows that went in *xid*, given its status on the remote.

        Returns counts: marked (committed and unchanged), kept (still dirty).
        """
        entries = [{"kind": r[0], "id": r[1], "rev": r[2], "xid": xid, "version": r[3]}
                   for r in self.conn.execute(OF_XID, (xid,))]
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in entries:
            by_kind[e["kind"]].append(e)
        counts = {"marked": 0, "kept": 0}
        with write_transaction(self.conn):
            for kind, group in by_kind.items():
                if status == COMMITTED:
                    marked = self._settle(kind, group)  # type: ignore[arg-type]
                elif status == ABORTED:
                    marked = 0  # never reached the remote: still dirty, pushed again
                    self.conn.executemany(FORGET, group)
                else:
                    # In progress or unknown: it may yet commit, or may have. The row stays
                    # dirty and the pushed version becomes its base, so a remote version
                    # that differs from it is recorded as a conflict, not overwritten.
                    marked = 0
                    self.conn.executemany(_set_base(kind), group)  # type: ignore[arg-type]
                    self.conn.executemany(FORGET, group)
                counts["marked"] += marked
                counts["kept"] += len(group) - marked
        return counts

    def _load(self, acked: Iterable[tuple[str, int]]) -> None:
        self.conn.execute(ACKED_TABLE)
        self.conn.execute(CLEAR_ACKED)
        self.conn.executemany(LOAD_ACKED, [(sql_text(i), rev) for i, rev in acked])

    def _settle(
        self, kind: Kind, entries: list[dict[str, Any]],
        pushed: Callable[[str], str | None] = lambda i: None,
    ) -> int:
        # Inside the caller's write transaction. One statement per step for the whole batch;
        # row by row only for the rows edited while in flight (usually none).
        table = TABLES[kind]
        xid = entries[0]["xid"]
        self._load((e["id"], e["rev"]) for e in entries)
        try:
            marked = self.conn.execute(MARK_ACKED.format(table=table)).rowcount
            if marked < len(entries):
                # Their pushed version: the page's when the caller has it, else the one the
                # triggers wrote into the entry when the row changed.
                recorded = dict(self.conn.execute(
                    VERSIONS.format(table=table), {"kind": kind, "xid": xid}).fetchall())
                edited = [{"kind": kind, "id": i, "rev": rev,
                           "version": pushed(i) or recorded.get(i)}
                          for i, rev in self.conn.execute(EDITED.format(table=table))]
                if edited:
                    self.conn.executemany(KNOWN_AT.format(table=table), edited)
                    self.conn.executemany(_set_base(kind), edited)
            # A row the remote accepted is no longer refused (as Outbox.mark_synced does).
            if self.conn.execute("SELECT 1 FROM quarantine LIMIT 1").fetchone() is not None:
                self.conn.execute(UNQUARANTINE_ACKED, {"kind": kind})
            self.conn.execute(FORGET_ACKED, {"kind": kind, "xid": xid})
        finally:
            self.conn.execute(CLEAR_ACKED)
        return marked


def _set_base(kind: Kind) -> str:
    pairs = ", ".join(f"'{c}', t.{c}" for c in COMPARED[kind])
    return SET_BASE.format(pairs=pairs, table=TABLES[kind])
