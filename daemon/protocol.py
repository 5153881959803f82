"""The control socket's messages, shared by the daemon (control.py, run.py, service.py) and
the CLI (cli.py, status.py): one class per request or reply, each with `to_json` (what goes
on the wire) and `from_json` (what was read from it).

The wire format is what `chatsync status --json` and `sync-now --json` print and scripts
read, so these keep its keys and values; new fields are only ever added. Stdlib only
(daemon/report.py is too): the CLI imports this on every command, which is also why the
messages are NamedTuples — immutable like frozen dataclasses, but created five times
faster at import (`benchmarks/cli.py`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from daemon.report import Outcome, SyncReport

__all__ = [
    "BY_DAEMON", "BY_THIS_PROCESS", "DaemonState", "DaemonStatus", "ErrorReply", "Health",
    "LastSync", "Outcome", "Route", "ServiceView", "Status", "SyncCounts", "SyncReply",
    "Syncing",
]


class Route:
    """Method and path of each request the socket answers."""

    HEALTH = ("GET", "/health")
    STATUS = ("GET", "/status")
    METRICS = ("GET", "/metrics")
    SYNC = ("POST", "/sync")


class DaemonState(StrEnum):
    """The daemon's state, as `status` shows it (the value is the wire's text)."""

    IDLE = "idle"
    SYNCING = "syncing"
    BACKING_OFF = "backing off"  # the last sync failed; retrying after a delay
    OFFLINE = "offline"  # the last sync could not reach the remote; retrying
    SIGNED_OUT = "signed out"  # no one signed in, or the session was refused for good
    STOPPING = "stopping"  # SIGTERM: finishing the batch in flight
    STOPPED = "stopped"  # the sync loop ended unexpectedly

    @classmethod
    def after(cls, outcome: Outcome) -> DaemonState | None:
        """The state a sync that ended so leaves the daemon in, or None when that
        depends on who is signed in (idle or signed out)."""
        if outcome is Outcome.SIGNED_OUT:
            return cls.SIGNED_OUT  # the session was refused for good: a person must sign in
        if outcome is Outcome.UNREACHABLE:
            return cls.OFFLINE
        if outcome.failed:
            return cls.BACKING_OFF
        return None


BY_DAEMON = "daemon"
BY_THIS_PROCESS = "this process"


class ErrorReply(NamedTuple):
    """A refusal (503: stopping; 404: no such route)."""

    error: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErrorReply:
        return cls(str(data.get("error") or "no reason given"))


class Health(NamedTuple):
    """GET /health: ok only while the sync loop runs (503 otherwise)."""

    ok: bool
    pid: int
    state: DaemonState
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "pid": self.pid, "state": self.state.value}
        if self.error is not None:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Health:
        return cls(bool(data["ok"]), int(data["pid"]), DaemonState(data["state"]),
                   data.get("error"))


class SyncReply(NamedTuple):
    """POST /sync (and `sync-now` in-process): the report, its sentence, who synced."""

    report: SyncReport
    summary: str
    by: str = BY_DAEMON

    @classmethod
    def of(cls, report: SyncReport, by: str) -> SyncReply:
        return cls(report, report.summary(), by)

    @property
    def outcome(self) -> Outcome:
        return self.report.outcome

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "summary": self.summary, "by": self.by}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncReply:
        return cls(SyncReport.from_json(data), str(data["summary"]), str(data["by"]))


class Syncing(NamedTuple):
    """The sync running now."""

    reason: str
    since: str
    sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "since": self.since, "sent": self.sent}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Syncing:
        return cls(data["reason"], data["since"], int(data["sent"]))


class LastSync(NamedTuple):
    """The last sync that finished: its report, what triggered it, when it ended."""

    report: SyncReport
    reason: str | None
    finished_at: str | None
    summary: str

    @property
    def outcome(self) -> Outcome:
        return self.report.outcome

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "reason": self.reason,
                "finished_at": self.finished_at, "summary": self.summary}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LastSync:
        return cls(SyncReport.from_json(data), data.get("reason"), data.get("finished_at"),
                   str(data["summary"]))


class SyncCounts(NamedTuple):
    """Syncs since the daemon started."""

    total: int
    by_reason: dict[str, int]
    noop: int  # found nothing to send
    own_writes_skipped: int  # edit bursts that were only the daemon's own writes
    errors: dict[str, int]  # "transient" / "permanent"

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_reason": dict(self.by_reason), "noop": self.noop,
                "own_writes_skipped": self.own_writes_skipped, "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncCounts:
        return cls(int(data["total"]), dict(data["by_reason"]), int(data["noop"]),
                   int(data["own_writes_skipped"]), dict(data["errors"]))


class ServiceView(NamedTuple):
    """What the sync loop (daemon/service.py) tells of itself."""

    state: DaemonState
    signed_in: str | None
    syncing: Syncing | None
    last_sync: LastSync | None
    failures: int  # failed syncs in a row
    retry_in_s: float | None  # when the back-off lets the next sync run
    syncs: SyncCounts

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "signed_in": self.signed_in,
            "syncing": self.syncing.to_json() if self.syncing else None,
            "last_sync": self.last_sync.to_json() if self.last_sync else None,
            "backoff": {"failures": self.failures, "retry_in_s": self.retry_in_s},
            "syncs": self.syncs.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceView:
        backoff = data["backoff"]
        return cls(
            DaemonState(data["state"]), data.get("signed_in"),
            Syncing.from_json(data["syncing"]) if data.get("syncing") else None,
            LastSync.from_json(data["last_sync"]) if data.get("last_sync") else None,
            int(backoff["failures"]), backoff.get("retry_in_s"),
            SyncCounts.from_json(data["syncs"]),
        )


class DaemonStatus(NamedTuple):
    """The `daemon` part of GET /status: the loop's view plus the process's."""

    service: ServiceView
    pid: int
    started_at: str
    socket: str
    next_scheduled: str | None
    watching: dict[str, Any]  # daemon/watch.py's describe(): mode, note
    live: dict[str, Any] | None  # daemon/live.py's describe() in HTTP mode: state, wakeups

    @property
    def state(self) -> DaemonState:
        return self.service.state

    def to_json(self) -> dict[str, Any]:
        return {**self.service.to_json(), "pid": self.pid, "started_at": self.started_at,
                "socket": self.socket, "next_scheduled": self.next_scheduled,
                "watching": dict(self.watching),
                "live": dict(self.live) if self.live is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaemonStatus:
        return cls(ServiceView.from_json(data), int(data["pid"]), str(data["started_at"]),
                   str(data["socket"]), data.get("next_scheduled"),
                   dict(data.get("watching") or {}), data.get("live"))


class Status(NamedTuple):
    """GET /status, and `chatsync status` with no daemon (daemon None): the store's own
    view (daemon/status.py's store_status: store, pending rows, quarantined, held, …) and,
    from a running daemon, its live view."""

    store: dict[str, Any]
    daemon: DaemonStatus | None

    def to_json(self) -> dict[str, Any]:
        return {**self.store, "daemon": self.daemon.to_json() if self.daemon else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        store = {k: v for k, v in data.items() if k != "daemon"}
        daemon = data.get("daemon")
        return cls(store, DaemonStatus.from_json(daemon) if daemon else None)
