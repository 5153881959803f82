"""Live changes, in HTTP mode: one waiting pull kept open to the sync server.

The server answers the waiting pull as soon as another device or the web app commits
something for this user (it hears of commits through LISTEN/NOTIFY on the change feed);
this loop then asks the sync loop for a sync ("live"), waits for it to finish, and waits
again from the new cursor. The sync applies what arrived through the inbox, with the same
conflict policy and echo skip as any other. The cursor stays the only truth: a lost
notification delays a change until the next wait, the schedule or an edit, never loses it.

State for `status`: "live" while a wait is open, "reconnecting" between failed attempts
(back-off 1 s, 2 s, 4 s … 30 s), "off" when there is no one to wait for.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from daemon.backoff import Backoff
from localstore import connect as connect_store

log = logging.getLogger(__name__)

LiveState = Literal["live", "reconnecting", "off"]
WAIT_S = 25.0  # under the server's usual 30 s cap, so the server never cuts a wait short
SESSION = "SELECT user_id, email FROM auth_session"
CURSOR = "SELECT snapshot FROM pull_cursor WHERE user_id = ?"


class Waiter(Protocol):
    def wait_for_changes(self, cursor: str, wait_seconds: float) -> bool: ...


class WaitingTransport(Protocol):
    def as_user(self, user_id: str, email: str) -> Waiter: ...

    def disconnect(self) -> None: ...


# (store connection, store path) -> a transport of the listener's own (its own HTTP client
# and token keeper on its own connection: the sync thread keeps its own).
ListenerTransport = Callable[[sqlite3.Connection, Path], WaitingTransport]
# Asks the sync loop for a sync and waits for it to finish (or for the timeout).
SyncAndWait = Callable[[], None]


class LiveListener:
    def __init__(self, store_path: Path, transport: ListenerTransport,
                 sync_and_wait: SyncAndWait, *, wait_s: float = WAIT_S) -> None:
        self.store_path = store_path
        self._make_transport = transport
        self._sync_and_wait = sync_and_wait
        self.wait_s = wait_s
        self.state: LiveState = "off"
        self.wakeups = 0  # changes the server told of (status, metrics)
        self._stop = threading.Event()
        self._backoff = Backoff(1.0, 30.0)
        self._thread = threading.Thread(target=self._run, name="live", daemon=True)

    def start(self) -> LiveListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def describe(self) -> dict[str, object]:
        return {"state": self.state, "wakeups": self.wakeups}

    def _run(self) -> None:
        conn = connect_store(self.store_path, migrate=False)
        transport = self._make_transport(conn, self.store_path)
        try:
            while not self._stop.is_set():
                self._once(conn, transport)
        finally:
            transport.disconnect()
            conn.close()

    def _once(self, conn: sqlite3.Connection, transport: WaitingTransport) -> None:
        session = conn.execute(SESSION).fetchone()
        cursor = conn.execute(CURSOR, (session[0],)).fetchone() if session else None
        if session is None or cursor is None:
            # Signed out, or the first pull has not finished: the sync loop handles both.
            self.state = "off"
            self._stop.wait(1.0)
            return
        try:
            changed = transport.as_user(session[0], session[1]).wait_for_changes(
                cursor[0], self.wait_s)
        except Exception as exc:
            delay = self._backoff.failed()
            if self.state != "reconnecting":
                log.info("live changes interrupted (%s); reconnecting in %.1fs",
                         _one_line(exc), delay)
            self.state = "reconnecting"
            transport.disconnect()
            self._stop.wait(delay)
            return
        self._backoff.succeeded()
        if self.state != "live":
            log.info("live: waiting for changes from the sync server")
        self.state = "live"
        if changed and not self._stop.is_set():
            self.wakeups += 1
            self._sync_and_wait()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
