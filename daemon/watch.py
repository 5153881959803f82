"""Edits: file events on the store's directory, debounced into one sync request per burst.

inotify (through watchdog) where it works; if it cannot start (inotify instance or watch
limits), a polling observer instead, and `describe()` says so for `chatsync status`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

WatchMode = Literal["auto", "native", "polling", "off"]
POLL_INTERVAL_S = 1.0
# Opening, reading and closing the store are not edits; SQLite opens the file read-write,
# so even a reader's close shows up as a "closed" (IN_CLOSE_WRITE) event.
EDIT_EVENTS = frozenset({"modified", "created", "deleted", "moved"})


class Debouncer:
    """Calls *fire* once per burst of pokes: *debounce_s* after the last poke, but never
    later than *max_wait_s* after the first, so a steady stream of edits still fires."""

    def __init__(self, fire: Callable[[], object], debounce_s: float, max_wait_s: float) -> None:
        self._fire = fire
        self._debounce_s = debounce_s
        self._max_wait_s = max(max_wait_s, 0.0)
        self._cond = threading.Condition()
        self._first: float | None = None
        self._last = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="debounce", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            self._last = now
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._first is None:
                        self._cond.wait()
                        continue
                    due = min(self._last + self._debounce_s, self._first + self._max_wait_s)
                    remaining = due - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._first = None
            self._fire()


class _StoreFiles(FileSystemEventHandler):
    def __init__(self, names: frozenset[str], on_edit: Callable[[], object]) -> None:
        self._names = names
        self._on_edit = on_edit

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in EDIT_EVENTS:
            return
        paths = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(os.path.basename(os.fsdecode(p)) in self._names for p in paths if p):
            self._on_edit()


class EditWatcher:
    """Watches the store file and its WAL; calls *on_edit* once per debounced burst."""

    def __init__(
        self, store_path: Path, on_edit: Callable[[], object], *, debounce_s: float,
        max_wait_s: float, mode: WatchMode = "auto",
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.store_path = store_path
        self.requested_mode = mode
        self.mode: str = "off"
        self.note: str | None = None
        self._debouncer = Debouncer(on_edit, debounce_s, max_wait_s)
        # Called on every event, undebounced: for checks that must not wait (a sign-in).
        self._on_event = on_event
        name = store_path.name
        self._handler = _StoreFiles(
            frozenset({name, f"{name}-wal", f"{name}-journal"}), self._poke
        )
        self._observer: BaseObserver | None = None

    def _poke(self) -> None:
        self._debouncer.poke()
        if self._on_event is not None:
            try:
                self._on_event()
            except Exception:
                # A failed check must not stop the watcher: the debounced edit still syncs.
                log.exception("the per-event check failed")

    def start(self) -> EditWatcher:
        if self.requested_mode == "off":
            self.note = "file watching is off; edits sync on the schedule"
            return self
        if self.requested_mode in ("auto", "native"):
            try:
                self._observer = self._start(Observer())
                self.mode = "native"
                return self
            except OSError as exc:
                if self.requested_mode == "native":
                    raise
                self.note = (
                    f"native file events unavailable ({exc.strerror or exc}); polling every "
                    f"{POLL_INTERVAL_S:g}s instead (raise fs.inotify.max_user_instances or "
                    "max_user_watches to fix)"
                )
                log.warning("%s", self.note)
        else:
            self.note = f"polling every {POLL_INTERVAL_S:g}s, as configured"
        self._observer = self._start(PollingObserver(timeout=POLL_INTERVAL_S))
        self.mode = "polling"
        return self

    def _start(self, observer: BaseObserver) -> BaseObserver:
        observer.schedule(self._handler, str(self.store_path.parent), recursive=False)
        try:
            observer.start()
        except OSError:
            observer.unschedule_all()
            raise
        return observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        self._debouncer.close()

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "polling": self.mode == "polling", "note": self.note}
