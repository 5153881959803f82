"""One sync: claim anonymous conversations, pull what other devices changed, then push
what changed here, batch by batch.

Push order: conversations, then their messages, then deletions. Each batch is one remote
transaction. Before its COMMIT the batch is recorded locally as in flight, with the remote
transaction's id and the versions pushed; after it, its rows are marked synced
compare-and-set, so an edit made meanwhile stays dirty, with the pushed version as its
merge base (localstore/inflight.py). A crash between the commit and the mark is resolved
at the next sync, before its pull, by asking the remote whether that transaction
committed: the pull then tells another device's edit from our own echo.

`sync()` never raises for an Exception: whatever goes wrong becomes a failed report with
a sentence, so the daemon's sync loop always goes on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from daemon import faults
from daemon.background import BACKSTOP_CHECKPOINT_PAGES, Checkpointer, Marking
from daemon.pulling import pull_into
from daemon.report import KindCounts, Outcome, SyncReport
from daemon.tokens import SignedOut
from localstore import connect as connect_store
from localstore.inbox import Inbox
from localstore.inflight import Inflight
from localstore.outbox import Kind, Outbox
from localstore.store import CLAIM_ANONYMOUS
from localstore.timestamps import utc_now
from localstore.transaction import write_transaction
from remote import push
from remote.auth_client import AuthUnavailable
from remote.dsn import InvalidDsn
from remote.errors import UnknownUser, explain, is_transient, is_unreachable
from remote.transport import DirectTransport, RemoteUser, Transport, TransportError
from remote.watchdog import DEFAULT_STALL_S, StallWatchdog

log = logging.getLogger(__name__)

# Called at each named phase of a sync: "read", "sent" (before the remote commit),
# "committed" (before the local mark) and "marked". Tests inject faults through it.
PhaseHook = Callable[[str, Kind | str], None]
# Builds the transport on the engine's own store connection (the HTTP transport keeps its
# session tokens there), given the store's path and origin.
TransportFactory = Callable[[sqlite3.Connection, Path, str], Transport]


class SyncEngine:
    """Keeps one store and one remote database in step, one `sync()` at a time."""

    def __init__(
        self, store_path: str | Path, dsn: str | None = None, *, batch_size: int = 1000,
        transport: Transport | None = None,
        transport_factory: TransportFactory | None = None,
        on_phase: PhaseHook | None = None,
        progress: Callable[[str, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        stall_timeout_s: float = DEFAULT_STALL_S,
        pull_page_size: int | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.batch_size = batch_size
        self.pull_page_size = pull_page_size or max(batch_size, 5000)
        # CHATSYNC_FAULT (tests only, see daemon/faults.py) may add a kill at a phase.
        hook = faults.chain(on_phase, faults.from_env()) or (lambda phase, kind: None)
        report_progress = progress or (lambda kind, n: None)
        # A hung remote connection is dropped after stall_timeout_s without progress.
        self._stall = StallWatchdog(
            stall_timeout_s, lambda: getattr(self.transport, "connection", None))
        self._hook = hook
        self._report_progress = report_progress
        # Checked between batches: the daemon's SIGTERM stops a long sync at a clean point.
        self.should_stop: Callable[[], bool] = should_stop or (lambda: False)
        self.local = connect_store(self.store_path)
        # The WAL is copied into the database file by a thread after each batch's marking
        # and after each sync (see daemon/background.py), not by whichever of the engine's commits
        # crosses SQLite's 1000-page mark: that commit would pay it inside the sync (~25 ms
        # after a 1 % change). The engine's own automatic checkpoint stays as a backstop
        # for a long write with no marking in it (a first pull).
        self.local.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
        self._checkpointer = Checkpointer(self.store_path)
        self._store_identity = _identity(self.store_path)
        self.outbox = Outbox(self.local)
        self.inflight = Inflight(self.local)
        # The mark on the change-feed entries this store's pushes write, so that its pulls
        # skip their echoes. It names this very file on this machine: a copy of the store
        # (a restored backup, a migrated laptop) gets another, so two devices never ignore
        # each other's writes.
        self.origin = store_origin(self.store_path)
        # A transport that keeps state in the store (the HTTP device's session tokens) gets
        # a connection of its own: a token refresh during a push must commit on its own, not
        # join (or collide with) the batch marking running on `local` in another thread.
        self._transport_conn: sqlite3.Connection | None = None
        if transport is None and transport_factory is not None:
            self._transport_conn = connect_store(self.store_path, migrate=False)
            transport = transport_factory(self._transport_conn, self.store_path, self.origin)
        if transport is None:
            if not dsn:
                raise ValueError("SyncEngine needs a dsn or a transport")
            transport = DirectTransport(dsn, self.origin)
        self.transport = transport

    def on_phase(self, phase: str, kind: Kind | str) -> None:
        """A named phase of a sync was reached: progress for the watchdog, then the hook."""
        self._stall.touch()
        self._hook(phase, kind)

    def progress(self, kind: str, n: int) -> None:
        """*n* rows of *kind* done: progress for the watchdog and the caller."""
        self._stall.touch()
        self._report_progress(kind, n)

    def close(self) -> None:
        self.disconnect()
        self._checkpointer.close()
        self.local.close()
        if self._transport_conn is not None:
            self._transport_conn.close()

    def sync(self) -> SyncReport:
        """Run one sync; never raises for remote or data trouble, the report says."""
        report = SyncReport(started_at=utc_now())
        started = time.perf_counter()
        changes = self.local.total_changes
        try:
            self._check_store_file()
            with self._stall:
                try:
                    self._sync(report)
                finally:
                    if self.local.total_changes != changes:  # a no-op sync wrote nothing
                        self._checkpointer.kick()
        except (psycopg.Error, OSError) as exc:
            self.disconnect()
            self._failed(report, _failure(is_transient(exc), is_unreachable(exc)), explain(exc))
        except TransportError as exc:
            self.disconnect()
            self._failed(report, _failure(exc.transient, exc.unreachable), str(exc))
        except AuthUnavailable as exc:
            self.disconnect()
            self._failed(report, _failure(True, exc.unreachable), str(exc))
        except SignedOut as exc:
            # The session was refused for good (tokens.py): only a new sign-in helps.
            self._failed(report, Outcome.SIGNED_OUT, str(exc))
        except (UnknownUser, InvalidDsn) as exc:
            self._failed(report, Outcome.PERMANENT_FAILURE, str(exc))
        except (sqlite3.Error, StoreFileChanged) as exc:
            # The local file. Busy (a client holds a long write transaction) is temporary;
            # anything else (file replaced, corrupt, disk full) needs a person.
            self._rollback_local()
            if _local_transient(exc):
                self._failed(report, Outcome.TRANSIENT_FAILURE,
                             f"the local store is busy (another program holds a write lock "
                             f"longer than the busy timeout): {exc}")
            else:
                self._failed(report, Outcome.PERMANENT_FAILURE, f"the local store failed: {exc}")
        except Exception as exc:
            # A defect or a row nothing foresaw: one failed sync, never a dead sync loop. The
            # traceback goes to the log for a bug report; the report gets a sentence.
            log.exception("sync failed on an unexpected error")
            self._rollback_local()
            self.disconnect()
            report.fail(Outcome.PERMANENT_FAILURE,
                        f"chatsync hit an unexpected error ({type(exc).__name__}: "
                        f"{_one_line(exc)}); nothing was lost, the log has the details")
        report.duration_s = time.perf_counter() - started
        return report

    @staticmethod
    def _failed(report: SyncReport, outcome: Outcome, error: str) -> None:
        report.fail(outcome, error)
        log.warning("sync failed (%s): %s",
                    "will retry" if outcome.transient else "needs attention", error)

    def _rollback_local(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.local.in_transaction:
                self.local.execute("ROLLBACK")

    def _check_store_file(self) -> None:
        # Writers who open the path after a replace write to the new file, which this
        # engine would never see: say so instead of syncing the old file in silence.
        now = _identity(self.store_path)
        if now != self._store_identity:
            what = "removed" if now is None else "replaced by another file"
            raise StoreFileChanged(
                f"the store file {self.store_path} was {what} while chatsync had it open; "
                "restart chatsync to sync the file now at that path")

    def _sync(self, report: SyncReport) -> None:
        session = self.local.execute("SELECT user_id, email FROM auth_session").fetchone()
        if session is None:
            report.skip(Outcome.NOT_SIGNED_IN, "no one is signed in")
            return
        user_id, email = session
        report.user_id = user_id
        if self.outbox.anonymous_conversations():
            report.claimed = self._claim(user_id)
        remote = self.transport.as_user(user_id, email)
        # A batch left in flight by a crash is settled first, so that the pull below tells
        # another device's edit of its rows from the echo of our own push.
        self._resolve_inflight(remote)
        # Pull before push: remote deletes and edits meet the local ones here, where the
        # conflict policy (localstore/inbox.py) decides, and only then is anything sent.
        self._pull(remote, user_id, report)
        # Messages whose conversation is not in the store are quarantined, so status shows
        # them instead of their waiting unseen.
        self.outbox.quarantine_orphans()
        upto = self.outbox.last_rev()
        if not self._anything_to_send(user_id, upto):
            report.skip(Outcome.NOTHING_TO_SEND, "nothing to send")
            return

        remote.ensure_profile()
        marking = Marking()
        try:
            kinds: list[tuple[Kind, Iterator[list[dict[str, Any]]], KindCounts]] = [
                ("conversation", self.outbox.conversations(user_id, upto, self.batch_size),
                 report.conversations),
                ("message", self.outbox.messages(user_id, upto, self.batch_size),
                 report.messages),
            ]
            for kind, pages, counts in kinds:
                page = next(pages, None)
                unmarked: Callable[[], None] | None = None  # the last batch, committed
                while page is not None:
                    if self._stopping(report):
                        if unmarked is not None:
                            unmarked()
                        return
                    # While this batch is staged and upserted on the remote, a thread marks
                    # the previous one and reads the next page (other rows: pages go by rev);
                    # it is done before this batch is recorded in flight, so the store has
                    # one writer at a time.
                    ahead: list[list[dict[str, Any]] | None] = []
                    marking.start(functools.partial(_mark_and_read, unmarked, pages, ahead))
                    unmarked = self._push_page(remote, kind, page, counts, marking.join,
                                               marking.chain)
                    marking.join()  # (already done unless nothing was sent)
                    page = ahead[0]
                # Conversations refused by the last batch keep their messages out of the
                # message pages.
                if unmarked is not None:
                    unmarked()
        except BaseException:
            marking.join(quiet=True)  # what is being raised says what went wrong
            raise
        marking.join()
        for page in self.outbox.tombstones(user_id, self.batch_size):
            if self._stopping(report):
                return
            self.on_phase("read", "deletion")
            remote.push_deletions(page)
            self.on_phase("committed", "deletion")
            self.outbox.drop_tombstones((r["kind"], r["id"], r["rev"]) for r in page)
            report.deletions.sent += len(page)
            self.on_phase("marked", "deletion")
        report.outcome = Outcome.SYNCED

    def _anything_to_send(self, user_id: str, upto: int) -> bool:
        # The first row of each push's pages: an index probe each, where counting every
        # pending row (Outbox.pending) reads them all, 0.5 s before a first sync of 100,000.
        return any(next(pages, None) for pages in (
            self.outbox.conversations(user_id, upto, 1),
            self.outbox.messages(user_id, upto, 1),
            self.outbox.tombstones(user_id, 1)))

    def _resolve_inflight(self, remote: RemoteUser) -> None:
        for xid in self.inflight.xids():
            status = remote.xact_status(xid) if xid else None
            counts = self.inflight.resolve(xid, status)
            log.info("a push left in flight (remote transaction %s, %s): %d row(s) marked "
                     "synced, %d kept to send again", xid or "unknown",
                     status or "status unknown", counts["marked"], counts["kept"])

    def _pull(self, remote: RemoteUser, user_id: str, report: SyncReport) -> None:
        try:
            result = pull_into(remote, user_id, Inbox(self.local),
                               page_size=self.pull_page_size, progress=self.progress)
        except psycopg.errors.UndefinedTable:
            # A deployment chatsync has not migrated has no change feed: push still works.
            log.warning("not pulling: the remote has no chatsync change feed; "
                        "run `chatsync migrate`")
            return
        if result.read:
            how = (" (a re-sync: the feed no longer reached back to this store's cursor)"
                   if result.resync else " (in full)" if result.full else "")
            log.info("pulled %d row(s)%s; %d changed the store", result.read, how,
                     result.applied.changed)
        report.pulled = result.applied.changed
        report.conflicts = result.applied.conflicts
        report.held = result.applied.held

    def _stopping(self, report: SyncReport) -> bool:
        if self.should_stop():
            report.stop("stopped between batches; the rest is sent at the next sync")
            return True
        return False

    def _push_page(
        self, remote: RemoteUser, kind: Kind, page: list[dict[str, Any]], counts: KindCounts,
        before_record: Callable[[], None], chain: Callable[[Callable[[], None]], None],
    ) -> Callable[[], None]:
        """Send one batch; returns its local marking, to run once the remote committed.

        *before_record* is called before the remote COMMIT, before the batch's in-flight
        record is settled (the engine waits there for the background work: one writer on
        the store at a time); *chain* runs work in the background after what runs there.
        """
        self.on_phase("read", kind)
        recorded: set[str] = set()  # ids recorded in flight by before_upsert (direct mode)

        def before_upsert(xid: str, staged: list[tuple[str, int]]) -> None:
            # Direct transport: the remote's transaction id is known before the upsert, so
            # every staged row is recorded in flight in the marking thread (after the
            # previous batch's marking) while PostgreSQL works on the upsert.
            def record() -> None:
                self.inflight.record(kind, page, staged, xid)
                recorded.update(i for i, _ in staged)
            chain(record)

        def before_commit(sent: push.BatchResult) -> None:
            # Written before the remote COMMIT: a crash after it leaves a record to resolve.
            assert sent.xid is not None
            before_record()
            if recorded:
                # Recorded during the upsert: staged rows the remote refused or found gone
                # are not in flight; they leave the record before the COMMIT, so that a
                # crash after it marks exactly what the remote took.
                self.inflight.forget(kind, list(recorded - {i for i, _ in sent.acked}),
                                     sent.xid)
            else:
                self.inflight.record(kind, page, sent.acked, sent.xid)
            self.on_phase("sent", kind)

        result = remote.push(kind, page, before_commit=before_commit,
                             before_upsert=before_upsert)
        self.on_phase("committed", kind)

        def mark() -> None:
            if result.xid is not None:
                self.inflight.settle(kind, page, result.acked, result.xid)
                if not recorded:
                    # Over HTTP the whole page was recorded before sending: what was not
                    # acked (refused, gone) is not in flight any more. (Directly, it left
                    # the record before the COMMIT.)
                    self.inflight.forget(kind, [r.id for r in result.refused] + result.gone,
                                         result.xid)
            self.outbox.quarantine(result.refused)
            for refusal in result.refused:
                log.warning("quarantined %s %s: %s", kind, refusal.id, refusal.reason)
            if result.gone:  # deleted elsewhere since our pull: the delete is applied now
                Inbox(self.local).apply_gone(kind, result.gone)
                log.info("%d %s(s) deleted on the server meanwhile were not sent again and "
                         "are removed here", len(result.gone), kind)
            self._checkpointer.kick()
            counts.sent += len(page)
            counts.written += result.written
            counts.quarantined += len(result.refused)
            self.progress(kind, len(page))
            self.on_phase("marked", kind)

        return mark

    def _claim(self, user_id: str) -> int:
        with write_transaction(self.local):
            claimed = self.local.execute(CLAIM_ANONYMOUS, {"user_id": user_id}).rowcount
        log.info("claimed %d signed-out conversation(s) for the signed-in user", claimed)
        return claimed

    def disconnect(self) -> None:
        """Drop the remote connection; the next sync opens a new one."""
        self.transport.disconnect()


def _mark_and_read(
    mark: Callable[[], None] | None, pages: Iterator[list[dict[str, Any]]],
    ahead: list[list[dict[str, Any]] | None],
) -> None:
    if mark is not None:
        mark()
    ahead.append(next(pages, None))


class StoreFileChanged(Exception):
    """The store's path no longer names the file the engine opened."""


def store_origin(path: Path) -> str:
    """A stable id for one store file on one machine."""
    machine = ""
    for source in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            machine = Path(source).read_text().strip()
            break
    st = os.stat(path)
    who = f"{machine or socket.gethostname()}|{path.resolve()}|{st.st_dev}|{st.st_ino}"
    return hashlib.sha256(who.encode()).hexdigest()[:16]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _one_line(exc: BaseException) -> str:
    # The error may quote a value that is not valid UTF-8 (lone surrogates): escape it, so
    # that printing or logging the sentence cannot fail in turn.
    text = str(exc).strip().encode("utf-8", "backslashreplace").decode("utf-8")
    return text.splitlines()[0][:200] if text else "no details"


def _failure(transient: bool, unreachable: bool) -> Outcome:
    if not transient:
        return Outcome.PERMANENT_FAILURE
    return Outcome.UNREACHABLE if unreachable else Outcome.TRANSIENT_FAILURE


def _local_transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)
