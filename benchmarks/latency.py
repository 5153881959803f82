"""Edit-to-remote latency and burst coalescing of a real `chatsync run`, default debounce.

    python -m benchmarks.latency [--edits 50] [--burst 500]

Uses $CHATSYNC_BENCH_ADMIN_DSN (default: postgres on 127.0.0.1:5432) to make a throwaway
database. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from daemon.config import Config
from localstore import Store
from tests.support import pg
from tests.support.daemons import DaemonProc
from tests.support.procs import wait_for

USER = "aaaaaaaa-0000-4000-8000-00000000beef"
INSERT = "INSERT INTO messages (id, conversation_id, role, content) VALUES (?, ?, 'user', ?)"
ARRIVED = "SELECT 1 FROM chat_messages WHERE id = %s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--burst", type=int, default=500)
    args = parser.parse_args()
    admin = os.environ.get("CHATSYNC_BENCH_ADMIN_DSN", pg.LOCAL_DSN)
    work = Path(tempfile.mkdtemp(prefix="chatsync-latency-"))
    daemon: DaemonProc | None = None
    stack = ExitStack()
    try:
        dsn = stack.enter_context(pg.migrated_database(admin, "chatsync_latency"))
        store_path = work / "store" / "chatsync.db"
        with Store(store_path) as store:
            store.sign_in(USER)
            conv = store.create_conversation("latency").id
        # The default debounce and max wait.
        daemon = DaemonProc.for_store(work, store_path, dsn).start()
        wait_for(lambda: daemon.idle_after(1), 30, "start-up sync")
        latencies = []
        with psycopg.connect(dsn, autocommit=True) as remote, \
                sqlite3.connect(store_path, isolation_level=None) as local:
            for i in range(args.edits):
                mid = f"msg_lat_{i}"
                started = time.perf_counter()
                local.execute(INSERT, (mid, conv, f"edit {i}"))
                wait_for(lambda m=mid: remote.execute(ARRIVED, (m,)).fetchone(), 60, mid)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.2)
            wait_for(lambda: daemon.status()["daemon"]["state"] == "idle", 30, "idle")
            before = daemon.syncs()["total"]
            started = time.perf_counter()
            for i in range(args.burst):
                local.execute(INSERT, (f"msg_burst_{i}", conv, f"burst {i}"))
            written_s = time.perf_counter() - started
            last = f"msg_burst_{args.burst - 1}"
            wait_for(lambda: remote.execute(ARRIVED, (last,)).fetchone(), 120, "the burst")
            burst_s = time.perf_counter() - started
            time.sleep(3)  # let any follow-up sync happen, so it is counted
            burst_syncs = daemon.syncs()["total"] - before
        defaults = Config().sync
        table = Table(title=f"chatsync run: edits to PostgreSQL (default debounce "
                            f"{defaults.debounce_ms} ms, max wait {defaults.max_wait_ms} ms)")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row(f"edit-to-remote latency, median of {args.edits}",
                      f"{statistics.median(latencies) * 1000:.0f} ms")
        table.add_row(f"edit-to-remote latency, worst of {args.edits}",
                      f"{max(latencies) * 1000:.0f} ms")
        table.add_row(f"burst of {args.burst} edits: written in", f"{written_s:.2f} s")
        table.add_row(f"burst of {args.burst} edits: all on remote after", f"{burst_s:.2f} s")
        table.add_row(f"burst of {args.burst} edits: syncs run", str(burst_syncs))
        Console().print(table)
    finally:
        if daemon is not None:
            daemon.stop()
            daemon.close()
        stack.close()


if __name__ == "__main__":
    main()
