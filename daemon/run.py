"""`chatsync run`: the lock, the sync loop, its four triggers, the control socket, signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from daemon import metrics, settings, systemd
from daemon.backoff import Backoff
from daemon.config import Config
from daemon.control import ControlServer
from daemon.engine import SyncEngine, store_origin
from daemon.live import LiveListener
from daemon.lock import StoreLock
from daemon.progress import TerminalProgress
from daemon.protocol import BY_DAEMON, DaemonStatus, ErrorReply, Health, Status, SyncReply
from daemon.report import SyncReport
from daemon.schedule import Schedule
from daemon.service import SESSION_USER, SyncService
from daemon.status import store_status
from daemon.watch import EditWatcher, WatchMode
from localstore import connect as connect_store
from localstore.timestamps import now_seconds, seconds

log = logging.getLogger("chatsync")

# After SIGTERM the batch in flight may finish; past this bound it is abandoned (its remote
# transaction rolls back when the connection drops, and it is re-sent at the next start).
STOP_BOUND_S = 10.0
# How long POST /sync waits for its sync before answering "still running".
SYNC_REQUEST_TIMEOUT_S = 600.0
BACKOFF_BASE_S = 1.0
# How long the live listener waits for the sync it asked for before it waits again.
LIVE_SYNC_WAIT_S = 120.0


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()), force=True, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    # APScheduler logs every job run at INFO; the sync line already says it. pgserver (the
    # embedded default) logs each command it runs, with its output.
    for noisy in ("apscheduler", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Daemon:
    """Wires the parts; `serve()` blocks until a signal and returns the exit status."""

    def __init__(self, config: Config, *, watch_mode: WatchMode = "auto") -> None:
        self.config = config
        self.store_path = config.local.resolved_path
        self.socket_path = config.daemon.resolved_socket
        self.watch_mode = watch_mode
        self.stop_requested = threading.Event()
        self.started_at = ""

    def serve(self) -> int:
        lock = StoreLock(self.store_path)
        lock.acquire()  # AlreadyRunning propagates: the CLI prints it and exits 1
        try:
            return self._serve()
        finally:
            lock.release()

    def _serve(self) -> int:
        self.remote_label = self.config.remote.label
        sync_cfg = self.config.sync
        self.bar = TerminalProgress(min_rows=sync_cfg.batch_size)

        def make_engine(progress: Callable[[str, int], None],
                        should_stop: Callable[[], bool]) -> SyncEngine:
            return settings.make_engine(self.config, progress=progress,
                                        should_stop=should_stop)

        self.service = SyncService(
            make_engine, backoff=Backoff(BACKOFF_BASE_S, sync_cfg.retry_max_seconds),
            on_sync=self._after_sync, progress=self.bar.advance, before_sync=self._before_sync,
        )
        self.control = ControlServer(self.socket_path, self)
        self._session_conn = connect_store(self.store_path, migrate=False)
        self._signed_in = self._read_signed_in()
        self.watcher = EditWatcher(
            self.store_path, self._asker("edit"),
            debounce_s=sync_cfg.debounce_ms / 1000, max_wait_s=sync_cfg.max_wait_ms / 1000,
            mode=self.watch_mode, on_event=self._check_sign_in,
        )
        self.schedule = Schedule(sync_cfg.interval_seconds, self._asker("schedule"))
        self.live = self._live_listener()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        log.info("chatsync daemon (pid %d) starting: store %s, remote %s, control socket %s",
                 os.getpid(), self.store_path, self.remote_label, self.socket_path)
        self.service.request("startup")  # whatever is pending, without waiting for a trigger
        self.watcher.start()
        self.schedule.start()
        self.control.start()
        if self.live is not None:
            self.live.start()
        self.started_at = now_seconds()
        log.info("ready: file watching %s, a sync every %gs", self.watcher.mode,
                 sync_cfg.interval_seconds)
        # Ready before the first sync starts, so no sync's STATUS can precede READY=1.
        systemd.notify("READY=1\nSTATUS=started; syncing what is pending")
        self.service.start()
        while not self.stop_requested.wait(1.0):
            pass
        return self._shutdown()

    def _asker(self, reason: str) -> Callable[[], None]:
        """A trigger's callback: ask for a sync (its ticket is not needed)."""
        def ask() -> None:
            self.service.request(reason)
        return ask

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("%s received: stopping (finishing the batch in flight, at most %gs)",
                 signal.Signals(signum).name, STOP_BOUND_S)
        self.stop_requested.set()

    def _shutdown(self) -> int:
        systemd.notify("STOPPING=1")
        self.service.stop()
        if self.live is not None:
            self.live.stop()
        self.schedule.stop()
        self.watcher.stop()
        finished = self.service.join(STOP_BOUND_S)
        self.control.stop()
        self.bar.end()
        if not finished:
            log.warning("the batch in flight did not finish within %gs and is abandoned; its "
                        "remote transaction rolls back and it is sent again at the next start",
                        STOP_BOUND_S)
            logging.shutdown()
            # The sync thread is still inside a remote call; don't wait for it.
            os._exit(0)
        self.service.engine.close()
        self._session_conn.close()
        log.info("stopped")
        return 0

    def _live_listener(self) -> LiveListener | None:
        """In HTTP mode, one waiting pull kept open (daemon/live.py); direct mode keeps to
        the schedule and the other triggers."""
        if not self.config.remote.url:
            return None
        factory = settings.http_transport_factory(self.config)
        origin = store_origin(self.store_path)

        def sync_and_wait() -> None:
            self.service.wait(self.service.request("live"), LIVE_SYNC_WAIT_S)

        return LiveListener(self.store_path, lambda conn, path: factory(conn, path, origin),
                            sync_and_wait)

    # --- sign-in, at once ----------------------------------------------------------------
    def _read_signed_in(self) -> str | None:
        row = self._session_conn.execute(SESSION_USER).fetchone()
        return row[0] if row else None

    def _check_sign_in(self) -> None:
        """On every store file event (watcher thread): a newly signed-in user syncs now.

        One indexed read of a one-row table; the debounce is for bursts of edits, and a
        person who just signed in expects their conversations on the server at once.
        """
        user = self._read_signed_in()
        if user == self._signed_in:
            return
        self._signed_in = user
        if user is not None:
            log.info("sign-in seen (%s): syncing now, without waiting for the debounce", user)
            self.service.request("sign-in", bypass_backoff=True)

    # --- hooks from the sync loop -------------------------------------------------------
    def _before_sync(self) -> None:
        self.bar.begin(self.store_path)

    def _after_sync(self, report: SyncReport) -> None:
        self.bar.end()
        self.schedule.postpone()
        state = self.service.state()
        systemd.notify(f"STATUS={state}; last sync: {report.summary()}")

    # --- ControlApi ---------------------------------------------------------------------
    def health(self) -> Health:
        """ok only while the sync loop runs: a live process that no longer syncs is not
        healthy (GET /health then answers 503)."""
        alive = self.service.alive
        return Health(alive, os.getpid(), self.service.state(), None if alive else (
            "the sync loop has stopped; nothing is synced until chatsync is restarted (the "
            "log says why)"))

    def status(self) -> Status:
        data = store_status(self.store_path, self.remote_label)
        next_run = self.schedule.next_run()
        daemon = DaemonStatus(
            self.service.snapshot(),
            pid=os.getpid(), started_at=self.started_at, socket=str(self.socket_path),
            next_scheduled=seconds(next_run) if next_run else None,
            watching=self.watcher.describe(),
            live=self.live.describe() if self.live is not None else None,
        )
        return Status(data, daemon)

    def metrics(self) -> str:
        data = store_status(self.store_path, self.remote_label)
        last = self.service.last
        return metrics.render(
            self.service.counters, data["pending"], len(data["quarantined"]),
            self.service.backoff.failures, last.duration_s if last else None,
        )

    def sync(self) -> SyncReply | ErrorReply:
        if self.service.stopping:
            return ErrorReply("the daemon is stopping")
        if not self.service.alive:
            return ErrorReply("the daemon's sync loop has stopped; restart chatsync")
        ticket = self.service.request("manual", bypass_backoff=True)
        report = self.service.wait(ticket, SYNC_REQUEST_TIMEOUT_S)
        if report is None:
            return ErrorReply("the daemon stopped or the sync is still running")
        return SyncReply.of(report, BY_DAEMON)


def run(config: Config, *, watch_mode: WatchMode = "auto") -> int:
    configure_logging(config.daemon.log_level)
    return Daemon(config, watch_mode=watch_mode).serve()
