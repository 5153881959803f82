"""A stall watchdog for the remote connection.

A connection that hangs (a half-dead NAT, a proxy that stops forwarding, a server that
stopped answering without closing) blocks libpq forever: no statement timeout fires on a
server that never saw the statement, and TCP keepalives are answered by whatever still
holds the socket open. The watchdog shuts the socket down when the sync has made no
progress for `timeout_s`; the blocked call then fails like a dropped connection, which is
a transient error: the sync is retried with back-off, and the open remote transaction
rolls back, so nothing half-done remains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import psycopg

log = logging.getLogger(__name__)

DEFAULT_STALL_S = 120.0


class StallWatchdog:
    """`with watchdog:` around a sync; `touch()` whenever it makes progress."""

    def __init__(self, timeout_s: float, connection: Callable[[], psycopg.Connection | None]):
        self.timeout_s = timeout_s
        self._connection = connection
        self._deadline = 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def touch(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def __enter__(self) -> StallWatchdog:
        self.touch()
        self._done.clear()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(min(0.5, self.timeout_s / 4)):
            if time.monotonic() > self._deadline:
                self._cut()
                self.touch()

    def _cut(self) -> None:
        conn = self._connection()
        if conn is None or conn.closed:
            return
        with contextlib.suppress(OSError, psycopg.Error):
            fd = os.dup(conn.fileno())
            with socket.socket(fileno=fd) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            log.warning("the remote connection made no progress for %gs; dropped it",
                        self.timeout_s)
