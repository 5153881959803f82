"""Benchmark: what a sync costs, for the web app's endpoint, for chatsync, and at the floor.

    .venv/bin/python -m benchmarks.bench                 # 2,000 conversations x 50 messages
    .venv/bin/python -m benchmarks.bench --messages 1000000 --skip baseline
    .venv/bin/python -m benchmarks.bench --json

Each scenario gets its own fresh database on the same PostgreSQL server (`--dsn`, else
$CHATSYNC_BENCH_DSN, else the tests' choice: $CHATSYNC_TEST_DSN, 127.0.0.1:5432, or an
embedded pgserver), and its own copy of one generated store (see workload.py):

- **floor**: the store's rows COPYed straight into chat_sessions / chat_messages of the
  full schema with triggers (and so foreign-key checks) off (`session_replication_role =
  replica`), in one transaction: about the least this machine can do to land the rows.
- **baseline**: the web app's `POST /api/chat/sync` (endpoint.py) against its original
  schema (tests/sql/original_app_schema.sql): a sync after 1 % of the messages changed,
  which, like every sync of the app, upserts every row again. The state its first sync
  leaves (rows, session stats, each message counted once) is loaded directly, untimed;
  `--baseline-first` runs and times that first sync instead (about 3 minutes at 100,000).
- **chatsync**: `SyncEngine.sync()` against the full schema (corrected analytics): first
  sync; the next sync (nothing changed, but it pulls back the feed entries of the first
  one's writes); then after 1 %, 0.1 % and one message changed or added; then nothing
  changed (the in-process figure is the median of 21 such syncs in one process).
- **chatsync-http**: the same engine through a real `chatsync serve` (one worker, its own
  fresh database with the full schema, tokens checked with an HS256 secret handed over in
  CHATSYNC_SERVER_JWT_SECRET) over HTTP, the device holding only an access token: first
  sync; the next sync; after 1 % changed (the same change as the direct scenario's); then
  nothing changed (median of 21 in one process). The server's log goes to a file.

Every sync runs in a child process; "peak MB" is that process's `ru_maxrss` (resident set
high-water mark, interpreter and imports included; "idle MB" is the same before the sync
starts; for chatsync-http the device's alone, the server being another process). "wall
s" is measured inside the child around the sync alone (for the endpoint: building the
client's payload from the store, then the requests). "rows written" is the
change in n_tup_ins + n_tup_upd + n_tup_del over the app's four tables, read from
pg_stat_user_tables once the counters have settled. "usage x truth" is the messages counted
in user_usage_daily divided by the user/assistant messages actually on the remote (1.00 is
exact; the tokens are compared the same way in --json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import workload
from benchmarks.workload import USER_ID, Shape

REPO = Path(__file__).resolve().parent.parent
ORIGINAL_SCHEMA = REPO / "tests" / "sql" / "original_app_schema.sql"
APP_TABLES = ("profiles", "chat_sessions", "chat_messages", "user_usage_daily")

SIGN_UP = "INSERT INTO public.profiles (id, email) VALUES (%s, %s)"
WRITES = """
SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables
WHERE schemaname = 'public' AND relname = ANY(%s)
"""
TRUTH = """
SELECT count(*) FILTER (WHERE role IN ('user', 'assistant')),
       coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))
                FILTER (WHERE role IN ('user', 'assistant')), 0)
FROM public.chat_messages
"""
COUNTED = """
SELECT coalesce(sum(messages_sent + messages_received), 0), coalesce(sum(total_tokens), 0)
FROM public.user_usage_daily
"""
REPLICA = "SET LOCAL session_replication_role = replica"
FLOOR_COPY_SESSIONS = """
COPY public.chat_sessions (id, user_id, title, created_at, updated_at, is_active) FROM STDIN
"""
FLOOR_COPY_MESSAGES = """
COPY public.chat_messages (id, session_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id,
    message_timestamp, error_message) FROM STDIN
"""
FLOOR_READ_SESSIONS = """
SELECT id, user_id, title, created_at, updated_at, is_active = 1 FROM conversations
"""
FLOOR_READ_MESSAGES = """
SELECT id, conversation_id, role, content, model, total_tokens, input_tokens, output_tokens,
       user_message_id, content_type, elapsed_time, completion_id, timestamp,
       CASE WHEN error = 1 THEN 'error' END
FROM messages
"""
# What the app's first sync leaves behind on its original schema, made without running it
# (it takes minutes): session statistics, and every message counted once, on current_date,
# as the original triggers count. Used unless --baseline-first.
AS_IF_FIRST_SYNCED = """
UPDATE public.chat_sessions AS s SET
    message_count = a.n, total_tokens = a.tokens, last_message_timestamp = a.last,
    last_message_preview = l.preview, last_model = l.model,
    updated_at = now(), last_activity = now()
FROM (SELECT session_id, count(*)::int AS n, coalesce(sum(total_tokens), 0)::int AS tokens,
             max(message_timestamp) AS last
      FROM public.chat_messages GROUP BY session_id) AS a,
     (SELECT DISTINCT ON (session_id) session_id, left(content, 200) AS preview, model
      FROM public.chat_messages ORDER BY session_id, message_timestamp DESC) AS l
WHERE s.id = a.session_id AND l.session_id = a.session_id;

INSERT INTO public.user_usage_daily (user_id, usage_date, messages_sent, messages_received,
    input_tokens, output_tokens, total_tokens, models_used)
SELECT u.user_id, current_date, u.sent, u.received, u.input, u.output, u.input + u.output,
       coalesce((SELECT jsonb_object_agg(model, n) FROM (
                    SELECT m.model, count(*) AS n FROM public.chat_messages AS m
                    JOIN public.chat_sessions AS s ON s.id = m.session_id
                    WHERE s.user_id = u.user_id AND m.model IS NOT NULL
                      AND m.role IN ('user', 'assistant')
                    GROUP BY m.model) AS per_model), '{}'::jsonb)
FROM (SELECT s.user_id,
             count(*) FILTER (WHERE m.role = 'user')::int AS sent,
             count(*) FILTER (WHERE m.role = 'assistant')::int AS received,
             sum(coalesce(m.input_tokens, 0))::int AS input,
             sum(coalesce(m.output_tokens, 0))::int AS output
      FROM public.chat_messages AS m JOIN public.chat_sessions AS s ON s.id = m.session_id
      WHERE m.role IN ('user', 'assistant') GROUP BY s.user_id) AS u;

UPDATE public.profiles AS p SET
    usage_stats = jsonb_build_object('total_messages', d.messages_sent + d.messages_received,
                                     'total_tokens', d.total_tokens, 'sessions_created', 0),
    last_active = now()
FROM public.user_usage_daily AS d WHERE d.user_id = p.id;
"""
NOOP_REPEATS = 20
# A transaction open elsewhere on the server holds back the xmin horizon, so no dead row
# version can be pruned: the baseline's thousands of updates of one usage row then crawl.
LONG_TRANSACTIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE xact_start < now() - interval '30 seconds' AND pid <> pg_backend_pid()
  AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
"""
FLOOR_FETCH = 2_000
SCENARIOS = ("floor", "baseline", "chatsync", "chatsync-http")


# --------------------------------------------------------------------------------------
# children: one sync each, reporting JSON on stdout
# --------------------------------------------------------------------------------------

def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_chatsync(store: str, dsn: str, batch_size: int, repeat: int) -> dict[str, Any]:
    from daemon.engine import SyncEngine

    return _run_engine(SyncEngine(store, dsn, batch_size=batch_size), repeat)


def _run_engine(engine: Any, repeat: int) -> dict[str, Any]:
    """One timed sync, then *repeat* more that must find nothing to send."""
    idle = _maxrss_mb()
    try:
        started = time.perf_counter()
        report = engine.sync()
        wall = time.perf_counter() - started
        extra = []
        for _ in range(repeat):
            t = time.perf_counter()
            again = engine.sync()
            extra.append(time.perf_counter() - t)
            if again.sent or not again.ok:
                raise RuntimeError(f"a repeated no-op sync did something: {again.summary()}")
    finally:
        engine.close()
    if not report.ok:
        raise RuntimeError(report.error)
    return {
        "wall_s": wall, "repeats_s": extra, "idle_mb": idle, "peak_mb": _maxrss_mb(),
        "sent": report.sent, "written_reported": report.conversations.written
        + report.messages.written, "quarantined": report.quarantined,
    }


def child_chatsync_http(store: str, url: str, batch_size: int, repeat: int) -> dict[str, Any]:
    """As child_chatsync, through the sync server at *url* with the store's access token."""
    import logging
    import sqlite3

    from daemon.engine import SyncEngine
    from daemon.tokens import TokenKeeper
    from remote.http_transport import HttpTransport
    from remote.transport import Transport

    # httpx logs every request at INFO: not in a benchmark's output.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def http(conn: sqlite3.Connection, store_path: Path, origin: str) -> Transport:
        # No auth client: the token the parent wrote outlives the scenario, so no refresh.
        return HttpTransport(url, TokenKeeper(conn, store_path, None), origin)

    return _run_engine(SyncEngine(store, transport_factory=http, batch_size=batch_size),
                       repeat)


def child_baseline(store: str, dsn: str) -> dict[str, Any]:
    from tests.support.endpoint import client_payload, endpoint_sync

    idle = _maxrss_mb()
    started = time.perf_counter()
    payload = client_payload(store, USER_ID)  # the client sends everything, every time
    with psycopg.connect(dsn, autocommit=True) as conn:
        result = endpoint_sync(conn, USER_ID, payload)
    wall = time.perf_counter() - started
    if result.errors:
        raise RuntimeError(f"endpoint errors: {result.details[:3]}")
    return {
        "wall_s": wall, "idle_mb": idle, "peak_mb": _maxrss_mb(),
        "sent": result.sessions_sent + result.messages_sent,
    }


def copy_rows(store: str, dsn: str) -> int:
    """COPY every conversation and message of *store* into *dsn*, triggers off; row count."""
    import sqlite3

    local = sqlite3.connect(store)
    sent = 0
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            conn.execute(REPLICA)
            for read, copy_sql in ((FLOOR_READ_SESSIONS, FLOOR_COPY_SESSIONS),
                                   (FLOOR_READ_MESSAGES, FLOOR_COPY_MESSAGES)):
                rows = local.execute(read)
                with conn.cursor().copy(copy_sql) as copy:
                    while chunk := rows.fetchmany(FLOOR_FETCH):
                        for row in chunk:
                            copy.write_row(row)
                        sent += len(chunk)
    finally:
        local.close()
    return sent


def child_floor(store: str, dsn: str) -> dict[str, Any]:
    idle = _maxrss_mb()
    started = time.perf_counter()
    sent = copy_rows(store, dsn)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "idle_mb": idle, "peak_mb": _maxrss_mb(), "sent": sent}


def run_child(args: argparse.Namespace) -> int:
    if args.child == "chatsync":
        out = child_chatsync(args.store, args.target, args.batch_size, args.repeat)
    elif args.child == "chatsync-http":
        out = child_chatsync_http(args.store, args.target, args.batch_size, args.repeat)
    elif args.child == "baseline":
        out = child_baseline(args.store, args.target)
    else:
        out = child_floor(args.store, args.target)
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------------------
# the parent: databases, stores, measurements
# --------------------------------------------------------------------------------------

@dataclass(slots=True)
class Step:
    scenario: str
    step: str
    wall_s: float
    sent: int
    written: int
    written_by_table: dict[str, int]
    peak_mb: float
    idle_mb: float
    usage_messages: int | None = None
    truth_messages: int | None = None
    usage_tokens: int | None = None
    truth_tokens: int | None = None
    changed: int | None = None
    noop_median_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usage_ratio(self) -> float | None:
        if self.usage_messages is None or not self.truth_messages:
            return None
        return self.usage_messages / self.truth_messages


def _write_counts(conn: psycopg.Connection) -> dict[str, int]:
    from tests.support.remote_facts import write_counts

    return write_counts(conn)


class Bench:
    def __init__(self, admin_dsn: str, shape: Shape, batch_size: int, work: Path,
                 quiet: bool, baseline_first: bool) -> None:
        self.baseline_first = baseline_first
        self.admin_dsn = admin_dsn
        self.shape = shape
        self.batch_size = batch_size
        self.work = work
        self.quiet = quiet
        self.databases: list[str] = []
        self.warnings: list[str] = []
        self.steps: list[Step] = []
        self.store = work / "pristine.db"
        self.one_percent = max(1, shape.messages // 100)
        self.tenth_percent = max(1, shape.messages // 1000)

    def check_horizon(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            n = int(conn.execute(LONG_TRANSACTIONS).fetchone()[0])
        if n:
            self.warnings.append(
                f"{n} transaction(s) open for over 30 s on this server held back vacuum "
                "during the run: update-heavy figures (the baseline) are inflated")

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    # -- plumbing --------------------------------------------------------------------

    def database(self, kind: str) -> str:
        from remote.migrate import migrate
        from tests.support import pg

        name = pg.create_database(self.admin_dsn, f"chatsync_bench_{kind}")
        self.databases.append(name)
        dsn = pg.dsn_for(self.admin_dsn, name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            if kind == "baseline":
                conn.execute(ORIGINAL_SCHEMA.read_bytes())
                conn.execute(SIGN_UP, (USER_ID, workload.EMAIL))  # the user signed up
            else:
                migrate(conn)
                if kind == "floor":
                    conn.execute(SIGN_UP, (USER_ID, workload.EMAIL))
        return dsn

    def drop_databases(self) -> None:
        from tests.support import pg

        for name in self.databases:
            pg.drop_database(self.admin_dsn, name)

    def copy_store(self, name: str) -> Path:
        path = self.work / f"{name}.db"
        shutil.copyfile(self.store, path)
        return path

    def child(self, mode: str, store: Path, dsn: str, repeat: int = 0) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "benchmarks.bench", "--child", mode, "--store", str(store),
               "--target", dsn, "--batch-size", str(self.batch_size), "--repeat", str(repeat)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{mode} child failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def measure(self, scenario: str, step: str, mode: str, store: Path, target: str,
                conn: psycopg.Connection, *, changed: int | None = None,
                repeat: int = 0) -> Step:
        """Run one child syncing *store* to *target* (a DSN or the sync server's URL);
        *conn* is the database it lands in, for the write counts and the usage check."""
        self.say(f"  {scenario}: {step} ...")
        self.check_horizon()
        before = _write_counts(conn)
        out = self.child(mode, store, target, repeat)
        after = _write_counts(conn)
        by_table = {t: after.get(t, 0) - before.get(t, 0) for t in APP_TABLES}
        result = Step(
            scenario=scenario, step=step, wall_s=out["wall_s"], sent=out["sent"],
            written=sum(by_table.values()), written_by_table=by_table,
            peak_mb=out["peak_mb"], idle_mb=out["idle_mb"], changed=changed,
        )
        if scenario != "floor":
            truth = conn.execute(TRUTH).fetchone()
            counted = conn.execute(COUNTED).fetchone()
            result.truth_messages, result.truth_tokens = int(truth[0]), int(truth[1])
            result.usage_messages, result.usage_tokens = int(counted[0]), int(counted[1])
        if out.get("repeats_s"):
            result.noop_median_s = statistics.median([out["wall_s"], *out["repeats_s"]])
            result.extra["noop_all_s"] = [out["wall_s"], *out["repeats_s"]]
        self.say(f"    {result.wall_s:.3f}s, sent {result.sent}, wrote {result.written}, "
                 f"peak {result.peak_mb:.0f} MB")
        self.steps.append(result)
        return result

    # -- scenarios -------------------------------------------------------------------

    def generate(self) -> float:
        self.say(f"generating {self.shape.conversations} conversations x "
                 f"{self.shape.per_conversation} messages (seed {self.shape.seed}) ...")
        started = time.perf_counter()
        workload.generate(self.store, self.shape)
        return time.perf_counter() - started

    def floor(self) -> None:
        dsn = self.database("floor")
        with psycopg.connect(dsn, autocommit=True) as conn:
            self.measure("floor", "COPY, triggers off", "floor", self.store, dsn, conn)

    def baseline(self) -> None:
        dsn = self.database("baseline")
        store = self.copy_store("baseline")
        with psycopg.connect(dsn, autocommit=True) as conn:
            if self.baseline_first:
                self.measure("baseline", "first sync", "baseline", store, dsn, conn)
            else:
                self.say("  baseline: loading the state its first sync leaves (not timed) ...")
                copy_rows(str(store), dsn)
                with conn.transaction():
                    conn.execute(REPLICA)
                    conn.execute(AS_IF_FIRST_SYNCED.encode())
            changed = workload.change(store, self.one_percent, seed=self.shape.seed + 1)
            self.measure("baseline", "after 1 % changed", "baseline", store, dsn, conn,
                         changed=changed.total)

    def chatsync(self) -> None:
        dsn = self.database("chatsync")
        store = self.copy_store("chatsync")
        with psycopg.connect(dsn, autocommit=True) as conn:
            self.measure("chatsync", "first sync", "chatsync", store, dsn, conn)
            # The next sync pulls back what the first one wrote (the change feed's entries
            # for them): a one-time catch-up, shown on its own so that the steps after it
            # show the steady state.
            self.measure("chatsync", "next, nothing changed", "chatsync", store, dsn, conn,
                         changed=0)
            for label, count, seed in (
                ("after 1 % changed", self.one_percent, self.shape.seed + 1),
                ("after 0.1 % changed", self.tenth_percent, self.shape.seed + 2),
                ("after 1 message added", 1, self.shape.seed + 3),
            ):
                changed = workload.change(store, count, seed=seed)
                self.measure("chatsync", label, "chatsync", store, dsn, conn,
                             changed=changed.total)
            self.measure("chatsync", "nothing changed", "chatsync", store, dsn, conn,
                         changed=0, repeat=NOOP_REPEATS)

    def chatsync_http(self) -> None:
        from benchmarks import server

        scenario = "chatsync-http"
        dsn = self.database("chatsync_http")
        store = self.copy_store("chatsync-http")
        secret = server.new_secret()
        srv = server.SyncServer(self.work / "server", dsn, secret)
        self.say(f"  {scenario}: starting chatsync serve at {srv.url} ...")
        srv.start()
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                def step(label: str, changed: int | None = None, repeat: int = 0) -> None:
                    # A fresh one-hour token before every step: a long run never outlives it.
                    server.sign_in(store, secret, USER_ID, workload.EMAIL)
                    try:
                        self.measure(scenario, label, scenario, store, srv.url, conn,
                                     changed=changed, repeat=repeat)
                    except RuntimeError as exc:
                        raise RuntimeError(f"{exc}\nsync server log:\n{srv.log_tail()}") \
                            from None

                step("first sync")
                step("next, nothing changed", changed=0)
                # Same count and seed as the direct scenario's: the very same rows change.
                changed = workload.change(store, self.one_percent, seed=self.shape.seed + 1)
                step("after 1 % changed", changed=changed.total)
                step("nothing changed", changed=0, repeat=NOOP_REPEATS)
        finally:
            srv.stop()


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------

def _find(steps: Sequence[Step], scenario: str, step: str) -> Step | None:
    return next((s for s in steps if s.scenario == scenario and s.step == step), None)


def targets(steps: Sequence[Step], shape: Shape) -> list[dict[str, Any]]:
    floor = _find(steps, "floor", "COPY, triggers off")
    first = _find(steps, "chatsync", "first sync")
    base = _find(steps, "baseline", "after 1 % changed")
    one = _find(steps, "chatsync", "after 1 % changed")
    noop = _find(steps, "chatsync", "nothing changed")
    http_first = _find(steps, "chatsync-http", "first sync")
    http_one = _find(steps, "chatsync-http", "after 1 % changed")
    http_noop = _find(steps, "chatsync-http", "nothing changed")
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, unit: str, ok: bool | None,
            note: str = "") -> None:
        out.append({"target": name, "value": value, "limit": limit, "unit": unit,
                    "met": ok, "note": note})

    if floor and first:
        r = first.wall_s / floor.wall_s
        add(f"first sync of {shape.messages:,} messages vs floor", r, 3.0, "x floor", r <= 3.0,
            "" if shape.messages == 100_000 else "the target is stated for 100,000 messages")
    if base and one:
        r = base.wall_s / one.wall_s
        add("1 % change vs the baseline's sync of the same store", r, 100.0, "x faster",
            r >= 100.0)
    if noop and noop.noop_median_s is not None:
        ok = noop.noop_median_s < 0.020 and noop.written == 0 and noop.usage_ratio in (1.0, None)
        add("nothing to send, in-process (median of "
            f"{1 + NOOP_REPEATS})", noop.noop_median_s * 1000, 20.0, "ms", ok,
            f"rows written {noop.written}")
    if first:
        big = shape.messages >= 1_000_000
        add(f"peak memory, first sync of {shape.messages:,} messages", first.peak_mb, 150.0,
            "MB", first.peak_mb <= 150.0 if big else None,
            "" if big else "the target is stated for 1,000,000 messages (--messages 1000000)")
    add("edit-to-remote with the default debounce", None, 0.5, "s median", None,
        "a daemon measurement: benchmarks/latency.py")
    # Issue 10: the same engine through `chatsync serve`.
    if http_noop and http_noop.noop_median_s is not None:
        ok = http_noop.noop_median_s <= 0.010 and http_noop.written == 0
        add(f"through the server: nothing to send (median of {1 + NOOP_REPEATS})",
            http_noop.noop_median_s * 1000, 10.0, "ms", ok,
            f"rows written {http_noop.written}")
    for label, http_step, direct in (("1 % change", http_one, one),
                                     ("first sync", http_first, first)):
        if http_step and direct:
            r = http_step.wall_s / direct.wall_s
            add(f"through the server: {label} vs direct", r, 1.5, "x direct", r <= 1.5,
                f"{http_step.wall_s:.3f} s vs {direct.wall_s:.3f} s")
    return out


def render(steps: Sequence[Step], shape: Shape, meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    floor = _find(steps, "floor", "COPY, triggers off")
    base = _find(steps, "baseline", "after 1 % changed")
    table = Table(title=(f"chatsync benchmark: {shape.conversations:,} conversations x "
                         f"{shape.per_conversation} = {shape.messages:,} messages, seed "
                         f"{shape.seed}, batch {meta['batch_size']}"))
    for name, justify in (("scenario", "left"), ("step", "left"), ("changed", "right"),
                          ("wall s", "right"), ("rows sent", "right"),
                          ("rows written", "right"), ("usage x truth", "right"),
                          ("peak MB", "right"), ("x floor", "right"),
                          ("baseline / this", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in steps:
        wall = s.noop_median_s if s.noop_median_s is not None else s.wall_s
        table.add_row(
            s.scenario, s.step + (" (median)" if s.noop_median_s is not None else ""),
            "" if s.changed is None else f"{s.changed:,}",
            f"{wall:.3f}" if wall >= 0.1 else f"{wall * 1000:.1f} ms",
            f"{s.sent:,}", f"{s.written:,}",
            "n/a" if s.usage_ratio is None else f"{s.usage_ratio:.2f}",
            f"{s.peak_mb:.0f}",
            f"{wall / floor.wall_s:.2f}" if floor else "",
            f"{base.wall_s / wall:,.1f}" if base and wall > 0 else "",
        )
    console = Console(width=max(Console().width, 150))
    console.print(table)
    t = Table(title="targets (issues 5, 10 and the throughput follow-up)")
    for name in ("target", "value", "limit", "met", "note"):
        t.add_column(name)
    for row in targets(steps, shape):
        value = "" if row["value"] is None else f"{row['value']:,.2f} {row['unit']}"
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        t.add_row(row["target"], value, f"{row['limit']} {row['unit']}", met, row["note"])
    console.print(t)
    for warning in meta.get("warnings", []):
        console.print(f"[bold red]warning:[/] {warning}")
    console.print(
        f"store {meta['store_mb']:.0f} MB generated in {meta['generate_s']:.1f}s; "
        f"peak MB = child ru_maxrss (idle before sync: "
        f"{min(s.idle_mb for s in steps):.0f} MB); {meta['machine']}"
    )


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU ({cpu or 'unknown'}), Python {sys.version.split()[0]}"


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


# --------------------------------------------------------------------------------------

def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", help="admin DSN of the PostgreSQL server to create databases on")
    p.add_argument("--conversations", type=int, default=None)
    p.add_argument("--per-conversation", type=int, default=50)
    p.add_argument("--messages", type=int, default=None,
                   help="total messages (conversations = messages / per-conversation)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--skip", action="append", default=[],
                   choices=list(SCENARIOS), help="leave a scenario out")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--baseline-first", action="store_true",
                   help="also time the app's first sync (minutes at the default size); "
                        "otherwise its result is loaded directly")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--keep", action="store_true", help="keep the databases and stores")
    p.add_argument("--child", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return run_child(args)
    per = args.per_conversation
    if args.conversations is None:
        conversations = -(-args.messages // per) if args.messages else 2_000
    else:
        conversations = args.conversations
    shape = Shape(conversations=conversations, per_conversation=per, seed=args.seed)

    if args.dsn:
        admin = args.dsn
    elif os.environ.get("CHATSYNC_BENCH_DSN"):
        admin = os.environ["CHATSYNC_BENCH_DSN"]
    else:
        from tests.support import pg

        admin, _how = pg.find_server()
    work = Path(tempfile.mkdtemp(prefix="chatsync-bench-"))
    bench = Bench(admin, shape, args.batch_size, work, quiet=args.quiet,
                  baseline_first=args.baseline_first)
    try:
        generate_s = bench.generate()
        meta = {
            "batch_size": args.batch_size, "generate_s": generate_s,
            "store_mb": bench.store.stat().st_size / 2**20, "machine": machine(),
            "postgres": server_version(admin), "peak_mb_is": "child ru_maxrss",
        }
        meta["machine"] += f", PostgreSQL {meta['postgres']}"
        for name in SCENARIOS:
            if name not in args.skip:
                getattr(bench, name.replace("-", "_"))()
    except BaseException:
        for s in bench.steps:  # what was measured before the failure
            print(json.dumps(asdict(s)), file=sys.stderr)
        raise
    finally:
        if not args.keep:
            bench.drop_databases()
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} and databases {bench.databases}", file=sys.stderr)
    meta["warnings"] = sorted(set(bench.warnings))
    if args.json:
        print(json.dumps({
            "shape": asdict(shape) | {"messages": shape.messages}, "meta": meta,
            "steps": [asdict(s) | {"usage_ratio": s.usage_ratio} for s in bench.steps],
            "targets": targets(bench.steps, shape),
        }, indent=2))
    else:
        render(bench.steps, shape, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
