"""Feed retention: prune change-feed entries older than server.feed_retention_seconds.

Each server process runs the prune on an APScheduler BackgroundScheduler (a thread, off the
event loop; APScheduler 3 is already a dependency). With several instances only one prunes
at a time: the prune takes a transaction-level advisory lock with pg_try_advisory_xact_lock
(it works through a transaction-mode pooler) and the others skip that round. Pruning is
idempotent, so a round skipped or repeated changes nothing.

A removed entry may be a delete some device has not pulled yet. So, in the same
transaction, each user's largest pruned xid is recorded in chatsync_feed.pruned; a pull
whose cursor had not seen it is told to re-sync (remote/pull.py, ResyncRequired).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from psycopg_pool import ConnectionPool

from remote.connect import scalar
from remote.errors import explain
from remote.server import metrics
from remote.server.db import DatabaseDown, connection

log = logging.getLogger(__name__)

# An arbitrary fixed number: every chatsync server instance prunes under it.
PRUNE_LOCK = 7_305_118_043
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%(key)s)"
# Per batch, so one prune never holds a huge transaction; the horizon is recorded with the
# entries it covers, in the same transaction.
PRUNE_BATCH = """
WITH gone AS (
    DELETE FROM chatsync_feed.changes AS f
    WHERE (f.user_id, f.kind, f.id) IN (
        SELECT c.user_id, c.kind, c.id FROM chatsync_feed.changes AS c
        WHERE c.changed_at < now() - %(retention)s ORDER BY c.changed_at LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED)
      AND f.changed_at < now() - %(retention)s
    RETURNING f.user_id, f.xid
), horizon AS (
    INSERT INTO chatsync_feed.pruned AS p (user_id, xid)
    SELECT g.user_id, max(g.xid) FROM gone AS g GROUP BY g.user_id
    ON CONFLICT (user_id) DO UPDATE
        SET xid = greatest(p.xid, EXCLUDED.xid), pruned_at = now()
)
SELECT count(*) FROM gone
"""
BATCH = 10_000


def prune(conn: psycopg.Connection, retention_s: float, *, batch: int = BATCH) -> int | None:
    """Prune entries older than *retention_s*; the number removed, or None if another
    instance holds the prune lock. *conn* is in autocommit mode (each batch commits)."""
    total = 0
    params = {"key": PRUNE_LOCK, "retention": timedelta(seconds=retention_s), "batch": batch}
    while True:
        with conn.transaction():
            if not scalar(conn, TRY_LOCK, params):
                return None if total == 0 else total
            removed = int(scalar(conn, PRUNE_BATCH, params))
        total += removed
        if removed < batch:
            return total


def prune_job(pool: ConnectionPool, retention_s: float) -> None:
    """One scheduled round; failures are logged and retried at the next round."""
    try:
        with connection(pool) as conn:
            removed = prune(conn, retention_s)
    except (DatabaseDown, psycopg.Error) as exc:
        reason = explain(exc) if isinstance(exc, psycopg.Error) else str(exc)
        log.warning("change-feed pruning skipped this round: %s", reason)
        return
    if removed:
        metrics.FEED_PRUNED.inc(removed)
        log.info("pruned %d change-feed entries older than %gs", removed, retention_s)


def start_pruning(pool: ConnectionPool, retention_s: float,
                  interval_s: float) -> BackgroundScheduler:
    """The scheduler that prunes every *interval_s*, first within a minute of start (a
    server restarted more often than *interval_s* still prunes)."""
    from datetime import UTC, datetime

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(prune_job, "interval", seconds=interval_s, args=(pool, retention_s),
                      id="chatsync-feed-prune", coalesce=True, max_instances=1,
                      next_run_time=datetime.now(UTC) + timedelta(seconds=min(interval_s, 60)))
    scheduler.start()
    return scheduler
