"""Prometheus text exposition of the daemon's counters.

Written out by hand: a dozen lines of a stable text format do not justify a client library
and its process-global registry.
"""

from __future__ import annotations

from typing import Any

from daemon.service import ERROR_KINDS, Counters

# One sample: the series name's suffix ("" or "_sum", "_count" of a summary), its labels
# ('{kind="message"}' or ""), its value.
Sample = tuple[str, str, float]


def render(counters: Counters, pending: dict[str, Any], quarantined: int,
           backoff_failures: int, last_duration_s: float | None) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[Sample]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{suffix}{labels} {value:g}" for suffix, labels, value in samples)

    total = sum(counters.syncs.values())
    metric("chatsync_syncs_total", "counter", "Syncs run, by what triggered them.",
           [("", f'{{trigger="{r}"}}', n) for r, n in sorted(counters.syncs.items())]
           or [("", '{trigger="startup"}', 0)])
    metric("chatsync_sync_errors_total", "counter", "Failed syncs, by kind of failure.",
           [("", f'{{kind="{k}"}}', counters.errors.get(k, 0)) for k in ERROR_KINDS])
    # A summary with no quantiles: its _sum and _count are series of their own.
    metric("chatsync_sync_duration_seconds", "summary", "Time spent syncing.",
           [("_sum", "", counters.duration_sum_s), ("_count", "", total)])
    if last_duration_s is not None:
        metric("chatsync_last_sync_duration_seconds", "gauge", "Duration of the last sync.",
               [("", "", last_duration_s)])
    metric("chatsync_rows_sent_total", "counter", "Rows sent to the remote, by kind.",
           [("", f'{{kind="{k}"}}', counters.rows_sent.get(k, 0))
            for k in ("conversation", "message", "deletion")])
    metric("chatsync_pending_rows", "gauge", "Local rows waiting to be pushed, by kind.",
           [("", f'{{kind="{k}"}}', pending[k])
            for k in ("conversations", "messages", "deletions")])
    metric("chatsync_quarantined_rows", "gauge", "Rows the remote refused.",
           [("", "", quarantined)])
    metric("chatsync_consecutive_failures", "gauge", "Failed syncs in a row (back-off).",
           [("", "", backoff_failures)])
    return "\n".join(lines) + "\n"
