"""Live pulls: one LISTEN connection per server process, and the pulls waiting on it.

Long-poll rather than server-sent events: a waiting pull is an ordinary `POST /v1/pull`
that is answered later, with the very answer a pull gives (same body, same cursor rules,
same auth, gzip and error codes), so the device's pull code, every proxy and load balancer,
and the 401-refresh path work unchanged; a lost connection is just a failed request the
device retries with its cursor. SSE would need a second protocol (a stream of events that
still must be pulled, re-authenticated while open, resumed after a drop) for no gain: one
request per change costs a few ms, and a device that is up to date holds one idle socket
either way.

How it stays correct (the cursor is the only truth; notifications are only hints):

- a waiter is registered *before* its pull checks the feed, so a commit notified during
  the check sets its event, and the pull checks again instead of sleeping through it;
- the notification is sent by PostgreSQL after the commit, so the check it triggers sees
  the change;
- notifications sent while the listener is disconnected are lost: every time it
  (re)connects, after its LISTEN is in place, it wakes every waiter, which checks the feed
  again. The waiter's cursor decides what is new, never the notification.

Waiting costs no database query and no pooled connection: the check returns its
connection to the pool before the request awaits its event in the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg

from remote.connect import conninfo
from remote.server import metrics

log = logging.getLogger(__name__)

LISTEN = "LISTEN chatsync_feed"  # the channel 0008's feed trigger notifies
# Reconnect after 0.5 s, 1 s, 2 s … never more than this apart (with jitter).
RECONNECT_MAX_S = 10.0
# After a reconnect every waiter re-checks the feed, spread over up to this long (about
# RECHECKS_PER_S re-checks per second), so a reconnect does not storm the pool.
RECHECK_SPREAD_MAX_S = 2.0
RECHECKS_PER_S = 1000.0
# TCP keepalives find a silently dead listener connection without any query.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}


@dataclass(eq=False, slots=True)
class Waiter:
    """One waiting pull: woken by its user's commits from any origin but its own."""

    user_id: str
    origin: str | None
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Waiters:
    """The waiting pulls of this process, by user."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Waiter]] = {}
        self.closing = False  # the server is stopping: waiting pulls answer at once

    def close(self) -> None:
        self.closing = True
        self.wake_all()

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_user.values())

    @contextmanager
    def waiting(self, user_id: str, origin: str | None) -> Iterator[Waiter]:
        """Register a waiter for the duration of the block (register before checking)."""
        waiter = Waiter(user_id, origin or None)
        self._by_user.setdefault(user_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            group = self._by_user.get(user_id)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._by_user[user_id]

    def notify(self, payload: str) -> None:
        """A feed notification '<user_id>:<origin>': wake that user's other devices."""
        user_id, _, origin = payload.partition(":")
        for waiter in self._by_user.get(user_id, ()):
            # A device's own push is no news to it (its origin is on its feed entries).
            if waiter.origin is None or waiter.origin != origin:
                waiter.event.set()

    def wake_all(self, *, spread_s: float = 0.0) -> None:
        """Notifications may have been missed: every waiter checks the feed again.

        With *spread_s*, the wake-ups are spread at random over that long, so thousands of
        waiters re-checking after a reconnect queue on the pool a few at a time instead of
        all at once (which could time them out into 503s)."""
        loop = asyncio.get_running_loop() if spread_s > 0 else None
        for group in self._by_user.values():
            for waiter in group:
                if loop is None:
                    waiter.event.set()
                else:
                    loop.call_later(random.uniform(0, spread_s), waiter.event.set)


def close_on_shutdown_signal(waiters: Waiters) -> None:
    """Answer waiting pulls as soon as SIGTERM/SIGINT arrives, so a restart does not wait
    out their long-polls (uvicorn waits for in-flight requests before shutting down).

    Chains to the handler uvicorn installed (it runs before the app's startup)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(num: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(waiters.close)
            previous(num, frame)

        signal.signal(signum, handler)


class Listener:
    """The process's LISTEN connection, read in the event loop; reconnects forever."""

    def __init__(self, dsn: str, waiters: Waiters) -> None:
        self._conninfo = conninfo(dsn, "chatsync-server-listen", **KEEPALIVES)
        self.waiters = waiters
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chatsync-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True) as conn:
                    await conn.execute(LISTEN)
                    metrics.LISTENER_CONNECTS.inc()
                    delay = 0.5
                    # LISTEN is in place: whatever committed while we were away is found
                    # by the waiters' own check of the feed.
                    self.waiters.wake_all(spread_s=min(RECHECK_SPREAD_MAX_S,
                                                       len(self.waiters) / RECHECKS_PER_S))
                    async for note in conn.notifies():
                        self.waiters.notify(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect, and say why
                log.warning("live-pull listener lost its database connection (%s); "
                            "reconnecting in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX_S)
