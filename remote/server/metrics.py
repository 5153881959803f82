"""Prometheus metrics of the sync server (GET /metrics).

With `--workers N` (N > 1) each worker is a process: `chatsync serve` then sets
PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client, and a scrape sums the
workers' files. Labels are bounded (route templates, status codes, short reason codes): no
user id, token or DSN ever becomes a label.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter("chatsync_server_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram(
    "chatsync_server_request_seconds", "Time to answer a request", ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROWS_PUSHED = Counter("chatsync_server_rows_pushed_total", "Rows received in pushes", ["kind"])
ROWS_WRITTEN = Counter(
    "chatsync_server_rows_written_total", "Pushed rows that changed the database", ["kind"]
)
ROWS_PULLED = Counter("chatsync_server_rows_pulled_total", "Rows sent in pulls", ["kind"])
REFUSALS = Counter("chatsync_server_refusals_total", "Pushed rows refused", ["kind"])
AUTH_FAILURES = Counter(
    "chatsync_server_auth_failures_total", "Requests refused with 401", ["reason"]
)
POOL_IN_USE = Gauge(
    "chatsync_server_pool_in_use", "Database connections lent to requests",
    multiprocess_mode="livesum",
)

RESYNCS = Counter("chatsync_server_resyncs_total",
                  "Pulls told to re-sync: cursor older than the feed's retention")
LIVE_WAITING = Gauge("chatsync_server_live_waiting", "Pulls waiting for a change",
                     multiprocess_mode="livesum")
LIVE_WAKEUPS = Counter("chatsync_server_live_wakeups_total",
                       "Waiting pulls answered with a change")
LISTENER_CONNECTS = Counter("chatsync_server_listener_connects_total",
                            "LISTEN connections made (the first, then reconnects)")
FEED_PRUNED = Counter("chatsync_server_feed_pruned_total", "Change-feed entries pruned")


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
