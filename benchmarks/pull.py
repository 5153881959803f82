"""Benchmark: the first pull of a large account on a new device, then the syncs after it.

    .venv/bin/python -m benchmarks.pull                      # 1,000 conversations x 100
    .venv/bin/python -m benchmarks.pull --conversations 200 --per-conversation 50

A fresh database (full schema, corrected analytics) on the server named by `--dsn`, else
$CHATSYNC_BENCH_DSN, else the tests' choice ($CHATSYNC_TEST_DSN, 127.0.0.1:5432, or an
embedded pgserver). The account's rows are written on the remote directly with SQL (as
the web app's server would), then a new device signs in and syncs:

- **first pull**: everything lands locally (wall time, rows, local file size after, with
  the WAL checkpointed into the file);
- **next sync**: nothing changed anywhere (one probe of the change feed, nothing written);
- **one remote change**: one message completed on the server, pulled.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.engine import SyncEngine
from localstore import Store
from remote.migrate import migrate
from tests.support import pg

USER = "aaaaaaaa-0000-4000-8000-0000000000b1"

PROFILE = "INSERT INTO public.profiles (id, email) VALUES (%s, 'bench@example.com')"
SESSIONS = """
INSERT INTO public.chat_sessions (id, user_id, title, created_at)
SELECT 'conv_bench_' || c, %(user)s, 'Conversation ' || c,
       timestamptz '2026-01-01' + c * interval '1 minute'
FROM generate_series(1, %(conversations)s) AS c
"""
# A realistic mix: user prompts and longer assistant replies with token counts.
MESSAGES = """
INSERT INTO public.chat_messages (id, session_id, role, content, model, input_tokens,
    output_tokens, total_tokens, content_type, message_timestamp)
SELECT 'msg_bench_' || c || '_' || i, 'conv_bench_' || c,
       CASE WHEN i %% 2 = 0 THEN 'user' ELSE 'assistant' END,
       repeat(CASE WHEN i %% 2 = 0 THEN 'How do I sync this? '
                   ELSE 'Here is a longer answer with some detail. ' END, 1 + i %% 8),
       CASE WHEN i %% 2 = 1 THEN 'gpt-bench' END,
       20 + i %% 50, CASE WHEN i %% 2 = 1 THEN 100 + i %% 400 ELSE 0 END,
       20 + i %% 50 + CASE WHEN i %% 2 = 1 THEN 100 + i %% 400 ELSE 0 END,
       'markdown', timestamptz '2026-01-01' + c * interval '1 minute' + i * interval '1 second'
FROM generate_series(1, %(conversations)s) AS c, generate_series(1, %(per)s) AS i
"""
COMPLETE_ONE = """
UPDATE public.chat_messages SET content = content || ' (edited on the web)'
WHERE id = 'msg_bench_1_1'
"""


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("CHATSYNC_BENCH_DSN"))
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--per-conversation", type=int, default=100)
    args = parser.parse_args(argv)

    admin = args.dsn or pg.find_server()[0]
    name = pg.create_database(admin, "chatsync_bench_pull")
    dsn = pg.dsn_for(admin, name)
    folder = Path(tempfile.mkdtemp(prefix="chatsync-bench-pull-"))
    console = Console()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(PROFILE, (USER,))
                conn.execute(SESSIONS, {"user": USER, "conversations": args.conversations})
                conn.execute(MESSAGES, {"conversations": args.conversations,
                                        "per": args.per_conversation})
            seeded = time.perf_counter() - started
            remote_bytes = conn.execute(
                "SELECT pg_total_relation_size('public.chat_messages')").fetchone()[0]

        path = folder / "new-device" / "chatsync.db"
        with Store(path) as store:
            store.sign_in(USER, "bench@example.com")
        table = Table(title=f"First pull of {args.conversations * args.per_conversation:,} "
                            f"messages ({args.conversations:,} conversations)")
        for column in ("sync", "wall s", "pulled rows", "sent", "local file MB"):
            table.add_column(column, justify="right" if column != "sync" else "left")

        engine = SyncEngine(path, dsn, batch_size=1000)
        try:
            for label, before in (("first pull", None), ("next sync, nothing changed", None),
                                  ("one message edited on the server", COMPLETE_ONE)):
                if before:
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute(before)
                report = engine.sync()
                if not report.ok:
                    raise SystemExit(f"sync failed: {report.error}")
                engine.local.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                table.add_row(label, f"{report.duration_s:.3f}", f"{report.pulled:,}",
                              str(report.sent), f"{file_size(path) / 1e6:.1f}")
        finally:
            engine.close()
        console.print(table)
        console.print(f"remote: seeded in {seeded:.1f}s; chat_messages is "
                      f"{remote_bytes / 1e6:.1f} MB with indexes")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        pg.drop_database(admin, name)


if __name__ == "__main__":
    main()
