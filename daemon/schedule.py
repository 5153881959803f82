"""The schedule: a sync request every `sync.interval_seconds` (APScheduler 3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

JOB_ID = "scheduled-sync"


class Schedule:
    """Runs *on_due* every *interval_s*; the job only asks the sync loop, it never syncs."""

    def __init__(self, interval_s: float, on_due: Callable[[], object]) -> None:
        self.interval_s = interval_s
        self._on_due = on_due
        self._scheduler = BackgroundScheduler(timezone=UTC)

    def start(self) -> Schedule:
        self._scheduler.add_job(
            self._on_due, "interval", seconds=self.interval_s, id=JOB_ID,
            next_run_time=datetime.now(UTC) + timedelta(seconds=self.interval_s),
            # APScheduler's defaults would drop a run that is more than 1s late (after a
            # suspend, or a busy machine) and could stack missed runs; we want exactly one
            # late run, however late.
            misfire_grace_time=None, coalesce=True, max_instances=1,
        )
        self._scheduler.start()
        return self

    def postpone(self) -> None:
        """A sync just ran (for whatever reason): the next scheduled one is a full interval
        after it, not at the old time, which would sync again for nothing."""
        if self._scheduler.running and self._scheduler.get_job(JOB_ID) is not None:
            self._scheduler.modify_job(
                JOB_ID, next_run_time=datetime.now(UTC) + timedelta(seconds=self.interval_s))

    def next_run(self) -> datetime | None:
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job else None

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
