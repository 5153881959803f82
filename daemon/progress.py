"""A progress bar on a terminal for long syncs (a first sync of a large store)."""

from __future__ import annotations

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

    def begin(self, total: int) -> None:
        if total <= self.min_rows or not self.console.is_terminal:
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
