"""What one sync did, for the CLI, the status endpoint and the logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    skipped: str | None = None  # why nothing was attempted (signed out, nothing pending)
    stopped: str | None = None  # why the sync ended early, after what the counts say
    error: str | None = None
    transient: bool | None = None  # for an error: worth retrying without a person's help
    signed_out: bool = False  # the session was refused for good: a person must sign in

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sent(self) -> int:
        return self.conversations.sent + self.messages.sent + self.deletions.sent

    @property
    def quarantined(self) -> int:
        return self.conversations.quarantined + self.messages.quarantined

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        if self.error:
            return f"sync failed after {self.duration_s:.2f}s: {self.error}"
        if self.skipped:
            pulled = f"; pulled {self.pulled} rows" if self.pulled else ""
            return f"nothing synced: {self.skipped}{pulled}"
        return (
            f"sent {self.conversations.sent} conversations, {self.messages.sent} messages, "
            f"{self.deletions.sent} deletions ({self.conversations.written + self.messages.written}"
            f" rows written remotely), {self.quarantined} quarantined, "
            f"pulled {self.pulled}, in {self.duration_s:.2f}s"
            + (f"; {self.stopped}" if self.stopped else "")
        )
