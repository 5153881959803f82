"""What one sync did, for the CLI, the status endpoint and the logs.

`SyncReport.outcome` is what every program reads (the service's state, back-off, metrics,
the CLI's exit status); the sentences (`error`, `skipped`, `stopped`, `summary()`) are for
people only and may be reworded at any time. Stdlib only: the CLI imports this module
through daemon/protocol.py on every command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How a sync ended. The value is what `outcome` holds in JSON."""

    SYNCED = "synced"  # pushed what was pending (and pulled what had changed)
    NOTHING_TO_SEND = "nothing_to_send"  # pulled what had changed; nothing was pending
    NOT_SIGNED_IN = "not_signed_in"  # no session in the store: nothing attempted
    STOPPED = "stopped"  # shutdown between batches; the rest goes at the next sync
    SIGNED_OUT = "signed_out"  # the session was refused for good: a person must sign in
    UNREACHABLE = "unreachable"  # the remote (database, sync or auth server) is out of reach
    TRANSIENT_FAILURE = "transient_failure"  # other trouble that passes by itself (busy, 503)
    PERMANENT_FAILURE = "permanent_failure"  # needs a person (credentials, schema, a defect)

    @property
    def failed(self) -> bool:
        return self in _FAILURES

    @property
    def transient(self) -> bool:
        """A failure worth retrying without anyone's help."""
        return self in (Outcome.UNREACHABLE, Outcome.TRANSIENT_FAILURE)


_FAILURES = frozenset({Outcome.SIGNED_OUT, Outcome.UNREACHABLE, Outcome.TRANSIENT_FAILURE,
                       Outcome.PERMANENT_FAILURE})


@dataclass(slots=True)
class KindCounts:
    sent: int = 0  # rows sent to the remote
    written: int = 0  # rows the remote inserted or updated (the rest were identical)
    quarantined: int = 0


@dataclass(slots=True)
class SyncReport:
    started_at: str
    user_id: str | None = None
    conversations: KindCounts = field(default_factory=KindCounts)
    messages: KindCounts = field(default_factory=KindCounts)
    deletions: KindCounts = field(default_factory=KindCounts)
    claimed: int = 0  # anonymous conversations given to the signed-in user
    pulled: int = 0  # remote rows that changed the local store (inserted, updated, deleted)
    conflicts: int = 0  # conflicts the pull resolved (see localstore/inbox.py)
    held: int = 0  # pulled rows the store could not hold as they are (held_rows)
    duration_s: float = 0.0
    # SYNCED until the engine decides otherwise (skip, stop or fail below).
    outcome: Outcome = Outcome.SYNCED
    skipped: str | None = None  # for people: why nothing was pushed
    stopped: str | None = None  # for people: why the sync ended early
    error: str | None = None  # for people: what failed, in a sentence

    def skip(self, outcome: Outcome, why: str) -> None:
        self.outcome, self.skipped = outcome, why

    def stop(self, why: str) -> None:
        self.outcome, self.stopped = Outcome.STOPPED, why

    def fail(self, outcome: Outcome, error: str) -> None:
        assert outcome.failed, outcome
        self.outcome, self.error = outcome, error

    @property
    def ok(self) -> bool:
        return not self.outcome.failed

    @property
    def transient(self) -> bool | None:
        """For a failure: whether it passes by itself; None for a sync that did not fail."""
        return self.outcome.transient if self.outcome.failed else None

    @property
    def signed_out(self) -> bool:
        return self.outcome is Outcome.SIGNED_OUT

    @property
    def sent(self) -> int:
        return self.conversations.sent + self.messages.sent + self.deletions.sent

    @property
    def quarantined(self) -> int:
        return self.conversations.quarantined + self.messages.quarantined

    def to_json(self) -> dict[str, Any]:
        # The keys and values scripts read before `outcome` existed stay as they were.
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["transient"] = self.transient
        data["signed_out"] = self.signed_out
        data["ok"] = self.ok
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncReport:
        """The report `to_json` wrote (extra keys, such as a status's, are ignored)."""
        report = cls(
            started_at=data["started_at"], user_id=data.get("user_id"),
            claimed=data.get("claimed", 0), pulled=data.get("pulled", 0),
            conflicts=data.get("conflicts", 0), held=data.get("held", 0),
            duration_s=data.get("duration_s", 0.0), skipped=data.get("skipped"),
            stopped=data.get("stopped"), error=data.get("error"),
            outcome=_outcome_of(data),
        )
        for kind in ("conversations", "messages", "deletions"):
            setattr(report, kind, KindCounts(**data.get(kind) or {}))
        return report

    def summary(self) -> str:
        if self.outcome.failed:
            return f"sync failed after {self.duration_s:.2f}s: {self.error}"
        if self.outcome in (Outcome.NOTHING_TO_SEND, Outcome.NOT_SIGNED_IN):
            pulled = f"; pulled {self.pulled} rows" if self.pulled else ""
            return f"nothing synced: {self.skipped}{pulled}"
        return (
            f"sent {self.conversations.sent} conversations, {self.messages.sent} messages, "
            f"{self.deletions.sent} deletions ({self.conversations.written + self.messages.written}"
            f" rows written remotely), {self.quarantined} quarantined, "
            f"pulled {self.pulled}, in {self.duration_s:.2f}s"
            + (f"; {self.stopped}" if self.stopped else "")
        )


def _outcome_of(data: dict[str, Any]) -> Outcome:
    if "outcome" in data:
        return Outcome(data["outcome"])
    # A daemon older than `outcome`: its flags tell failures apart well enough for a CLI.
    if data.get("ok", data.get("error") is None):
        if data.get("stopped"):
            return Outcome.STOPPED
        return Outcome.NOTHING_TO_SEND if data.get("skipped") else Outcome.SYNCED
    if data.get("signed_out"):
        return Outcome.SIGNED_OUT
    return Outcome.TRANSIENT_FAILURE if data.get("transient") else Outcome.PERMANENT_FAILURE
