"""The single-flight sync loop: every trigger asks it; it runs one sync at a time.

A request that arrives during a sync becomes exactly one follow-up sync, however many
arrive. Failures back off (see backoff.py); a manual request bypasses the back-off.

No exception ends the loop: an unexpected one becomes a failed sync (permanent, with a
sentence) and the loop goes on. Should the thread end anyway, `alive` says so (the
daemon's health turns unhealthy) and waiting callers are released at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from daemon.backoff import Backoff
from daemon.engine import SyncEngine
from daemon.protocol import DaemonState, LastSync, ServiceView, SyncCounts, Syncing
from daemon.report import Outcome, SyncReport
from localstore.timestamps import now_seconds, seconds

log = logging.getLogger("chatsync")

# Several reasons can be folded into one sync; the log and metrics name the first of these.
REASON_ORDER = (
    "manual", "startup", "sign-in", "sign-out", "edit", "live", "retry", "schedule",
)

# factory(progress, should_stop) -> SyncEngine: called once, with the loop's progress
# callback (kind, rows) and the check the engine makes between batches.
EngineFactory = Callable[[Callable[[str, int], None], Callable[[], bool]], SyncEngine]
SESSION_USER = "SELECT user_id FROM auth_session"
DATA_VERSION = "PRAGMA data_version"


@dataclass
class Counters:
    syncs: Counter[str] = field(default_factory=Counter)  # by reason
    noop: int = 0  # syncs that found nothing to send
    own_writes_skipped: int = 0  # edit bursts that were only the daemon's own writes
    errors: Counter[str] = field(default_factory=Counter)  # error_kind(): transient / permanent
    rows_sent: Counter[str] = field(default_factory=Counter)  # by kind
    duration_sum_s: float = 0.0


class SyncService:
    def __init__(
        self, engine_factory: EngineFactory, *, backoff: Backoff | None = None,
        on_sync: Callable[[SyncReport], None] | None = None,
        progress: Callable[[str, int], None] | None = None,
        before_sync: Callable[[], None] | None = None,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.counters = Counters()
        self._cond = threading.Condition()
        self._requested = self._started = self._completed = 0
        self._reasons: set[str] = set()
        self._bypass = False
        self._retry_at: float | None = None
        self._stopping = False
        self._dead = False  # the loop thread ended without being asked to
        self._on_sync = on_sync or (lambda report: None)
        self._progress = progress or (lambda kind, n: None)
        self._before_sync = before_sync or (lambda: None)
        self.syncing: Syncing | None = None
        self.last: SyncReport | None = None
        self.last_reason: str | None = None
        self.last_finished_at: datetime | None = None
        self.engine = engine_factory(self._on_progress, lambda: self._stopping)
        self._user: str | None = self._session_user()
        self._data_version: int | None = None
        self._thread = threading.Thread(target=self._loop, name="sync", daemon=True)

    # --- asking -----------------------------------------------------------------------
    def request(self, reason: str, *, bypass_backoff: bool = False) -> int:
        """Ask for a sync; returns a ticket for `wait`. Never blocks on a sync."""
        with self._cond:
            self._requested += 1
            self._reasons.add(reason)
            self._bypass = self._bypass or bypass_backoff
            self._cond.notify_all()
            return self._requested

    def wait(self, ticket: int, timeout: float | None = None) -> SyncReport | None:
        """The report of the first sync that started after *ticket* was issued."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._completed >= ticket or self._stopping or self._dead, timeout)
            return self.last if self._completed >= ticket else None

    # --- running ----------------------------------------------------------------------
    def start(self) -> SyncService:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take no more work; the engine stops between batches (its should_stop)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Whether the loop ended within *timeout*."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def alive(self) -> bool:
        """Whether the sync loop is running (or, before start(), will run)."""
        return not self._dead and (self._thread.is_alive() or self._thread.ident is None
                                   or self._stopping)

    def _loop(self) -> None:
        try:
            self._serve()
        finally:
            with self._cond:
                if not self._stopping:
                    self._dead = True
                    log.critical("the sync loop stopped unexpectedly; nothing is synced "
                                 "until chatsync is restarted")
                self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._stopping:
                        return
                    wait = None if self._retry_at is None else self._retry_at - time.monotonic()
                    self._cond.wait(wait if self._requested > self._started else None)
                if self._stopping:
                    return
                ticket, self._started = self._requested, self._requested
                reasons, self._reasons, self._bypass = self._reasons, set(), False
            try:
                self._run_one(ticket, reasons)
            except Exception as exc:
                # engine.sync() already turns its errors into reports; this is the loop's
                # own trouble (the store's session read, a hook). Record it as a failed
                # sync, so that waiters get an answer, and go on.
                log.exception("a sync round failed unexpectedly")
                self._fail(ticket, reasons, exc)

    def _due(self) -> bool:
        if self._stopping or self._requested <= self._started:
            return False
        return self._bypass or self._retry_at is None or time.monotonic() >= self._retry_at

    def _run_one(self, ticket: int, reasons: set[str]) -> None:
        user = self._session_user()
        if user != self._user:
            reasons.add("sign-in" if user else "sign-out")
            log.info("%s", f"signed in as {user}; claiming and pushing its conversations"
                     if user else "signed out; local data is kept and nothing is pushed")
            self._user = user
        if reasons == {"edit"} and self._only_own_writes():
            # The file events came from this daemon's own marks: no other connection has
            # committed since the last sync, so there is nothing new to look at.
            with self._cond:
                self.counters.own_writes_skipped += 1
                self._completed = ticket
                self._cond.notify_all()
            return
        reason = min(reasons, key=lambda r: REASON_ORDER.index(r) if r in REASON_ORDER else 99)
        with self._cond:
            self.syncing = Syncing(reason, now_seconds())
        self._before_sync()
        report = self.engine.sync()
        self._data_version = self._read_data_version()
        with self._cond:
            self._record(reason, report)
            self._completed = ticket
            self.syncing = None
            self._cond.notify_all()
        self._on_sync(report)

    def _fail(self, ticket: int, reasons: set[str], exc: Exception) -> None:
        report = SyncReport(started_at=now_seconds())
        report.fail(Outcome.PERMANENT_FAILURE, (
            f"chatsync hit an unexpected error ({type(exc).__name__}); nothing was lost, the "
            "log has the details"))
        reason = min(reasons, key=lambda r: REASON_ORDER.index(r) if r in REASON_ORDER else 99)
        with self._cond:
            self._record(reason, report)
            self._completed = ticket
            self.syncing = None
            self._cond.notify_all()

    def _record(self, reason: str, report: SyncReport) -> None:
        c = self.counters
        c.syncs[reason] += 1
        c.duration_sum_s += report.duration_s
        for kind, counts in (("conversation", report.conversations),
                             ("message", report.messages), ("deletion", report.deletions)):
            c.rows_sent[kind] += counts.sent
        self.last, self.last_reason = report, reason
        self.last_finished_at = datetime.now(UTC)
        retry = ""
        if report.outcome.failed:
            c.errors[error_kind(report.outcome)] += 1
            delay = self.backoff.failed()
            self._retry_at = time.monotonic() + delay
            if report.outcome.transient:
                # Transient trouble heals by itself: retry without waiting for a trigger.
                self._requested += 1
                self._reasons.add("retry")
                retry = f"; temporary, retrying in {delay:.1f}s"
            else:
                retry = (f"; needs attention, next try on the next trigger after {delay:.1f}s"
                         " or at once with `chatsync sync-now`")
        else:
            self.backoff.succeeded()
            self._retry_at = None
            if report.sent == 0:  # nothing to send, no one signed in, or stopped at once
                c.noop += 1
        log.info("sync #%d (%s): %s%s", sum(c.syncs.values()), reason, report.summary(), retry)

    def _on_progress(self, kind: str, n: int) -> None:
        with self._cond:
            if self.syncing is not None:
                self.syncing = self.syncing._replace(sent=self.syncing.sent + n)
        self._progress(kind, n)

    def _session_user(self) -> str | None:
        row = self.engine.local.execute(SESSION_USER).fetchone()
        return row[0] if row else None

    def _read_data_version(self) -> int:
        return int(self.engine.local.execute(DATA_VERSION).fetchone()[0])

    def _only_own_writes(self) -> bool:
        return self._data_version is not None and self._read_data_version() == self._data_version

    # --- telling ----------------------------------------------------------------------
    def retry_in_s(self) -> float | None:
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def state(self) -> DaemonState:
        if self._stopping:
            return DaemonState.STOPPING
        if not self.alive:
            return DaemonState.STOPPED
        if self.syncing is not None:
            return DaemonState.SYNCING
        after = DaemonState.after(self.last.outcome) if self.last is not None else None
        if after is not None:
            return after
        if self._user is None:
            return DaemonState.SIGNED_OUT
        return DaemonState.IDLE

    def snapshot(self) -> ServiceView:
        with self._cond:
            last = None
            if self.last is not None:
                last = LastSync(
                    self.last, self.last_reason,
                    seconds(self.last_finished_at)
                    if self.last_finished_at else None,
                    self.last.summary(),
                )
            c = self.counters
            return ServiceView(
                state=self.state(), signed_in=self._user, syncing=self.syncing,
                last_sync=last, failures=self.backoff.failures, retry_in_s=self.retry_in_s(),
                syncs=SyncCounts(sum(c.syncs.values()), dict(c.syncs), c.noop,
                                 c.own_writes_skipped, dict(c.errors)),
            )


# The kinds of failed syncs, as metrics and `status` count them.
ERROR_KINDS = ("transient", "permanent")


def error_kind(outcome: Outcome) -> str:
    """A failed sync's kind: whether it passes by itself."""
    return ERROR_KINDS[0] if outcome.transient else ERROR_KINDS[1]
