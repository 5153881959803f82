"""A progress bar on a terminal for long syncs (a first sync of a large store)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class TerminalProgress:
    """Shown only on a terminal, and only for syncs of more than *min_rows* rows."""

    def __init__(self, min_rows: int, console: Console | None = None) -> None:
        self.min_rows = min_rows
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def begin(self, store_path: Path) -> None:
        """Show the bar if this sync has more than *min_rows* rows to send. The store is
        counted only on a terminal: under a service manager nothing is ever drawn."""
        if not self.console.is_terminal:
            return
        from daemon.status import store_status

        pending = store_status(store_path, "")["pending"]
        total = pending["conversations"] + pending["messages"] + pending["deletions"]
        if total <= self.min_rows:
            return
        self._progress = Progress(
            TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
            TimeRemainingColumn(), console=self.console, transient=True,
        )
        self._task = self._progress.add_task("sync", total=total)
        self._progress.start()

    def advance(self, kind: str, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
