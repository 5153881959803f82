"""Push batches in flight: what was sent, in which remote transaction, and settling it.

A batch's acked rows are written to `push_inflight` (kind, id, rev, xid, version) before
the remote COMMIT, and settled after it in one local transaction:

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
from collections.abc import Iterable, Sequence
from typing import Any

from localstore.inbox import CONVERSATION_COMPARED, MESSAGE_COMPARED
from localstore.outbox import MARK_CONVERSATION, MARK_MESSAGE, UNQUARANTINE, Kind, sql_text
from localstore.transaction import write_transaction

COMPARED: dict[str, tuple[str, ...]] = {
    "conversation": CONVERSATION_COMPARED, "message": MESSAGE_COMPARED,
}
TABLES = {"conversation": "conversations", "message": "messages"}
MARKS = {"conversation": MARK_CONVERSATION, "message": MARK_MESSAGE}

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
SET_BASE = """
INSERT OR REPLACE INTO sync_base (kind, id, version)
SELECT :kind, :id, :version
WHERE EXISTS (SELECT 1 FROM {table} WHERE id = :id)
   OR EXISTS (SELECT 1 FROM tombstones WHERE kind = :kind AND id = :id)
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
        by_id = {r["id"]: r for r in rows}
        params = [{"kind": kind, "id": i, "rev": rev, "xid": xid,
                   "version": version_of(kind, by_id[i])} for i, rev in acked]
        if params:
            with write_transaction(self.conn):
                self.conn.executemany(RECORD, params)

    def settle(
        self, kind: Kind, rows: Sequence[dict[str, Any]], acked: Iterable[tuple[str, int]],
        xid: str,
    ) -> int:
        """After the remote COMMIT; returns how many rows were still at the pushed rev."""
        by_id = {r["id"]: r for r in rows}
        entries = [{"kind": kind, "id": i, "rev": rev, "xid": xid,
                    "version": version_of(kind, by_id[i])} for i, rev in acked]
        with write_transaction(self.conn):
            return self._settle(kind, entries)

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
                    self.conn.executemany(SET_BASE.format(table=TABLES[kind]), group)
                    self.conn.executemany(FORGET, group)
                counts["marked"] += marked
                counts["kept"] += len(group) - marked
        return counts

    def _settle(self, kind: Kind, entries: list[dict[str, Any]]) -> int:
        # Inside the caller's write transaction.
        table = TABLES[kind]
        marked = 0
        edited = []
        for e in entries:
            before = self.conn.total_changes
            self.conn.execute(MARKS[kind], {"id": e["id"], "rev": e["rev"]})
            if self.conn.total_changes > before:
                marked += 1
            else:
                edited.append(e)
        if edited:
            self.conn.executemany(KNOWN_AT.format(table=table), edited)
            self.conn.executemany(SET_BASE.format(table=table), edited)
        # A row the remote accepted is no longer refused (as Outbox.mark_synced does).
        if self.conn.execute("SELECT 1 FROM quarantine LIMIT 1").fetchone() is not None:
            self.conn.executemany(UNQUARANTINE, [{"kind": kind, "id": e["id"]} for e in entries])
        self.conn.executemany(FORGET, entries)
        return marked
