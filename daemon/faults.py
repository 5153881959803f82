"""TEST-ONLY fault injection: kill this process at a named phase of a sync.

Read once, when a `SyncEngine` is built, from the environment variable
`CHATSYNC_FAULT=<phase>:<kind>:<n>` — for example `committed:message:2` sends SIGKILL to the
current process the second time the engine reaches the "committed" phase for a message
batch. `<phase>` is one of the engine's phases ("read", "sent", "committed", "marked"),
`<kind>` is "conversation", "message", "deletion" or "*" (any), and `<n>` counts from 1
(default 1). An optional fourth part chooses what happens instead of SIGKILL:
`raise` raises `InjectedFault` (an unexpected error: the sync must fail with a sentence and
the daemon go on), `escape` raises `InjectedEscape`, a BaseException nothing in chatsync
catches (the sync loop dies; the daemon's health must say so). Unset (the only case in
production), nothing is installed and the engine runs exactly as before.

The fault-injection tests (tests/test_faults_crash.py) use it to kill `chatsync sync-now`
and `chatsync run` at every phase and check that a later sync loses and double-counts
nothing. It exists so those tests need no mocks; do not set it outside tests.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

ENV = "CHATSYNC_FAULT"
PHASES = ("read", "sent", "committed", "marked")
KINDS = ("conversation", "message", "deletion", "*")
ACTIONS = ("kill", "raise", "escape")


class InjectedFault(RuntimeError):
    """`CHATSYNC_FAULT=…:raise`: an error no part of chatsync expects."""


class InjectedEscape(BaseException):
    """`CHATSYNC_FAULT=…:escape`: ends the sync thread, as a defect past every handler."""

PhaseHook = Callable[[str, str], None]


def parse(spec: str) -> tuple[str, str, int, str]:
    """`phase:kind:n[:action]` -> (phase, kind, n, action); a clear ValueError otherwise."""
    parts = spec.strip().split(":")
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"{ENV}={spec!r}: expected <phase>:<kind>:<n>[:<action>]")
    phase = parts[0]
    kind = parts[1] if len(parts) > 1 and parts[1] else "*"
    n = int(parts[2]) if len(parts) > 2 and parts[2] else 1
    action = parts[3] if len(parts) > 3 and parts[3] else "kill"
    if phase not in PHASES or kind not in KINDS or n < 1 or action not in ACTIONS:
        raise ValueError(
            f"{ENV}={spec!r}: phase must be one of {PHASES}, kind one of {KINDS}, n >= 1, "
            f"action one of {ACTIONS}"
        )
    return phase, kind, n, action


def kill_at(phase: str, kind: str = "*", n: int = 1, action: str = "kill") -> PhaseHook:
    """A phase hook that SIGKILLs this process (or raises) at the n-th matching phase."""
    seen = 0

    def hook(at_phase: str, at_kind: str) -> None:
        nonlocal seen
        if at_phase == phase and kind in ("*", at_kind):
            seen += 1
            if seen == n:
                log.warning("%s: %s in pid %d at %s:%s #%d", ENV, action, os.getpid(), phase,
                            at_kind, n)
                if action == "raise":
                    raise InjectedFault(f"injected by {ENV} at {phase}:{at_kind}")
                if action == "escape":
                    raise InjectedEscape(f"injected by {ENV} at {phase}:{at_kind}")
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def from_env() -> PhaseHook | None:
    """The hook `CHATSYNC_FAULT` asks for, or None when it is unset or empty."""
    spec = os.environ.get(ENV, "")
    return kill_at(*parse(spec)) if spec else None


def chain(first: PhaseHook | None, second: PhaseHook | None) -> PhaseHook | None:
    """Both hooks, in order (either may be None)."""
    if first is None or second is None:
        return first or second

    def both(phase: str, kind: str) -> None:
        first(phase, kind)
        second(phase, kind)

    return both
