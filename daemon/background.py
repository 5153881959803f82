"""The sync engine's background work, each in a thread of its own.

`Marking`: a pushed batch's local marking (and the read of the next page) runs while the
engine sends the next batch, so the store and the remote work at the same time; one
writer on the store at a time, because the engine joins it before it writes again.
`Checkpointer`: the store's WAL copied into its file outside any sync.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class Marking:
    """Local work run in a thread while the engine sends the next batch (the thread works on
    the store, the engine waits on the remote). `join` waits for it and raises what it
    raised (a fault hook's kill included)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, work: Callable[[], None]) -> None:
        """Run *work* in a thread, once the work before it is done (raising what it raised)."""
        self.join()
        self.chain(work)

    def chain(self, work: Callable[[], None]) -> None:
        """Run *work* in a new thread once the running work is done (not if it failed)."""
        before = self._thread

        def run() -> None:
            if before is not None:
                before.join()
            if self._error is not None:
                return
            try:
                work()
            except BaseException as exc:  # handed to the engine's thread at join()
                self._error = exc

        self._thread = threading.Thread(target=run, name="chatsync-marking", daemon=True)
        self._thread.start()

    def join(self, *, quiet: bool = False) -> None:
        """Wait for the work; raise what it raised (only log it when *quiet*: the caller is
        already raising an error of its own, which must not be masked)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if not quiet:
                raise error
            log.warning("the local marking failed too: %s", error)


# The engine connection's own automatic checkpoint, in pages of the WAL (SQLite's default
# is 1000): only reached by a long write between two kicks of the Checkpointer.
BACKSTOP_CHECKPOINT_PAGES = 10_000


class Checkpointer:
    """Copies the store's WAL into its database file in a thread of its own.

    `kick()` asks for a PASSIVE checkpoint (it never waits for readers or writers, and
    they never wait for it) and returns at once; kicks while one runs coalesce into one
    more. It has its own connection: a checkpoint holds no lock a client or the engine
    waits on, and what it copies is already committed, so a crash anywhere loses nothing.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Condition()
        self._pending = False
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        with self._wanted:
            if self._closed:
                return
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="chatsync-checkpoint", daemon=True)
                self._thread.start()
            self._wanted.notify()

    def _run(self) -> None:
        while True:
            with self._wanted:
                while not self._pending and not self._closed:
                    self._wanted.wait()
                if not self._pending:
                    return
                self._pending = False
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(self._path, check_same_thread=False)
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the next kick (or the backstop) tries again
                log.debug("background checkpoint failed: %s", exc)

    def close(self) -> None:
        """Finish a checkpoint asked for, then stop."""
        with self._wanted:
            self._closed = True
            self._wanted.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
