"""Load generator: N simulated devices against `chatsync serve`, through PgBouncer.

    uv run python -m benchmarks.devices [--devices 100,1000] [--idle-devices 5000]
        [--interval 10] [--duration 30] [--idle 20] [--workers 2]

Each device is an exact emulation of a device's HTTP requests (remote/http_transport.py)
with a real HS256 access token: it pushes its conversation, pulls in full once, then keeps
a live pull open (`wait_seconds`) and every --interval seconds syncs as the engine does
(a pull, then a push of one new message). Devices come in pairs of one user, so each
message is also seen by the user's other device: the send time embedded in its content →
the time that device's pull returns it is the remote-commit-to-device latency (it includes
the push's own round trip). A server without live pull (422 on `wait_seconds`) is polled
every second instead, and the output says so.

Everything runs on loopback: a fresh database on the PostgreSQL at --admin-dsn (created,
migrated, dropped at the end), PgBouncer in transaction mode in front of it, and
`chatsync serve --workers K` on a free port. Bounded in devices, time and rate (hard caps
below); stops by itself; Ctrl-C or SIGTERM stops and cleans up every process it started.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import random
import resource
import secrets
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from benchmarks.loadprocs import ROOT, BenchError, Server, cpu_seconds, rss_mb
from tests.support.pgbouncer import PgBouncer

# httpcore tries `import sniffio` on every request; where it is not installed, each failed
# import searches sys.path again (a tenth of the generator's CPU in a profile). None here
# makes the import fail at once, which is what httpcore expects without sniffio (asyncio).
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
# Hard caps: whatever the flags say, the run stays this small.
MAX_DEVICES = 10_000
MAX_DURATION_S = 600
MIN_INTERVAL_S = 0.5
MAX_WORKERS = 4
MAX_TOTAL_S = 3600
LOOPBACK = "127.0.0.1"
SETUP_CONCURRENCY = 32
POLL_EVERY_S = 1.0  # the fallback for a server without live pull
SETTLE_S = 11.0  # > PostgreSQL's 10 s idle stats flush: the idle window gets only its own
PAGE_SIZE = 1000  # sync.batch_size's default: what the engine asks for
MARK = "bench-sent:"

MIGRATE = ("import sys, psycopg; from remote.migrate import migrate\n"
           "with psycopg.connect(sys.argv[1], autocommit=True) as c: migrate(c)")
CONNECTIONS = """\
SELECT count(*) AS open,
       count(*) FILTER (WHERE state <> 'idle') AS busy,
       count(*) FILTER (WHERE query ILIKE 'LISTEN%%') AS listening
FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"""
BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
XACTS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"


# ---------------------------------------------------------------- measurement state


@dataclass
class Window:
    """What one measured phase collected."""

    started: float = 0.0
    ended: float = 0.0
    push_ms: list[float] = field(default_factory=list)
    deliver_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    recording: bool = False

    def counts(self, sent: float) -> bool:
        return self.recording and sent >= self.started


@dataclass
class Run:
    """Shared by all devices of one N."""

    wait_s: float
    live: bool = True
    pushing: bool = False
    pull_before_push: bool = True
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    window: Window = field(default_factory=Window)


def token(secret: str, user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "aud": "authenticated", "role": "authenticated",
                       "email": f"{user_id[:8]}@bench.invalid", "iat": now,
                       "exp": now + 4 * 3600}, secret, algorithm="HS256")


def conversation(cid: str, user_id: str) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"id": cid, "user_id": user_id, "title": "bench", "created_at": at,
            "updated_at": at, "is_active": 1, "was_synced": 0, "rev": 1}


def message(cid: str, sent: float) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(sent))
    return {"id": str(uuid.uuid4()), "conversation_id": cid, "role": "user",
            "content": f"{MARK}{sent:.6f} a message of about the size people type",
            "model": "gpt-4o", "total_tokens": 12, "input_tokens": 12, "output_tokens": 0,
            "user_message_id": None, "content_type": "text", "elapsed_time": 0,
            "completion_id": None, "timestamp": at, "error": 0, "error_message": None,
            "was_synced": 0, "rev": 1}


class Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


# ---------------------------------------------------------------- one device


class Device:
    """One device's requests, as HttpTransport/HttpUser make them."""

    def __init__(self, run: Run, http: httpx.AsyncClient, user_id: str, bearer: str) -> None:
        self.run, self.http, self.user_id = run, http, user_id
        self.headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip",
                        "Authorization": f"Bearer {bearer}"}
        self.origin = uuid.uuid4().hex[:16]
        self.conversation_id = str(uuid.uuid4())
        self.cursor: str | None = None
        self.seen: set[str] = set()

    async def call(self, route: str, body: dict[str, Any], read_s: float = 60) -> dict[str, Any]:
        # compact JSON as the device sends it (small bodies: no gzip, as GZIP_OVER_BYTES)
        data = json.dumps(body, separators=(",", ":")).encode()
        r = await self.http.post(route, content=data, headers=self.headers,
                                 timeout=httpx.Timeout(read_s, connect=10))
        if r.status_code != 200:
            try:
                detail = r.json()
            except ValueError:
                detail = {"error": r.text[:200]}
            raise Refused(r.status_code, detail)
        answer: dict[str, Any] = r.json()
        return answer

    def _pull_body(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "page_size": PAGE_SIZE, "after_message_id": None,
                "messages_only": False, "origin": self.origin}

    async def push_conversation(self) -> None:
        await self.call("/v1/push", {"conversations": [conversation(
            self.conversation_id, self.user_id)], "origin": self.origin})

    async def pull(self) -> None:
        """The engine's pull: in full the first time (paged), then from the cursor."""
        body = self._pull_body()
        while True:
            answer = await self.call("/v1/pull", body)
            self.take(answer)
            if not answer.get("more"):
                return
            body = {**body, "cursor": None, "messages_only": True,
                    "after_message_id": answer["messages"][-1]["id"]}

    def take(self, answer: dict[str, Any]) -> None:
        """Apply an answer: note each new message's delivery latency, move the cursor."""
        now = time.time()
        if answer.get("resync"):
            self.cursor = None  # the server pruned past our cursor: a full pull next
            return
        for row in answer.get("messages", ()):
            if row["id"] in self.seen:
                continue
            self.seen.add(row["id"])
            content = row.get("content") or ""
            if content.startswith(MARK):
                sent = float(content[len(MARK):].split(" ", 1)[0])
                if self.run.window.counts(sent):
                    self.run.window.deliver_ms.append((now - sent) * 1000)
        if answer.get("changed") and answer.get("cursor") and not answer.get("more"):
            self.cursor = answer["cursor"]

    async def live(self, first_wait_s: float) -> None:
        """Keep one live pull open (or poll every second on a server without it)."""
        wait = first_wait_s
        while True:
            try:
                if self.cursor is None:
                    await self.pull()
                elif self.run.live:
                    answer = await self.call(
                        "/v1/pull", {"cursor": self.cursor, "origin": self.origin,
                                     "wait_seconds": round(wait, 1)},
                        read_s=wait + 30)
                    self.take(answer)
                    wait = self.run.wait_s
                else:
                    await self.pull()
                    await asyncio.sleep(POLL_EVERY_S)
            except (httpx.HTTPError, Refused) as exc:
                self._error("pull", exc)
                await asyncio.sleep(1 + random.random())

    async def pushing(self, interval_s: float) -> None:
        """Every interval: a sync with one new message (the engine pulls, then pushes)."""
        await asyncio.sleep(random.uniform(0, interval_s))
        while self.run.pushing:
            started = time.monotonic()
            try:
                if self.run.pull_before_push:
                    await self.pull()
                sent = time.time()
                await self.call("/v1/push", {"messages": [message(self.conversation_id, sent)],
                                             "origin": self.origin})
                if self.run.window.counts(sent):
                    self.run.window.push_ms.append((time.time() - sent) * 1000)
            except (httpx.HTTPError, Refused) as exc:
                self._error("push", exc)
            left = max(0.0, interval_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):  # the end of pushing ends the sleep
                await asyncio.wait_for(self.run.stopped.wait(), left)

    def _error(self, what: str, exc: Exception) -> None:
        if self.run.window.recording:
            kind = str(exc.status) if isinstance(exc, Refused) else type(exc).__name__
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, OSError) and cause.errno:  # e.g. a reset connection
                kind += f" ({errno.errorcode.get(cause.errno, cause.errno)})"
            self.run.window.errors[f"{what} {kind}"] += 1


# ---------------------------------------------------------------- database side


@contextlib.contextmanager
def fresh_database(admin: str, root: Path) -> Iterator[str]:
    name = f"chatsync_devices_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(admin, dbname=name)
    try:
        # The server's own checkout migrates: it may carry migrations this one lacks.
        subprocess.run([sys.executable, "-c", MIGRATE, dsn], cwd=root, check=True,
                       capture_output=True, timeout=120)
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


class Sampler:
    """pg_stat_activity every half second, from the admin database (not counted).

    Its two connections are made before any load starts and kept: a connection attempt
    under full load can time out, which must not end the run.
    """

    def __init__(self, admin: str, dbname: str) -> None:
        self.admin, self.dbname = admin, dbname
        self.open_max = self.busy_max = self.listening = 0
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.poller: psycopg.AsyncConnection[Any] | None = None

    async def connect(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(self.admin, autocommit=True)
        self.poller = await psycopg.AsyncConnection.connect(self.admin, autocommit=True)

    async def close(self) -> None:
        for conn in (self.conn, self.poller):
            if conn is not None:
                await conn.close()

    async def xacts(self) -> int:
        assert self.conn is not None
        row = await (await self.conn.execute(XACTS, (self.dbname,))).fetchone()
        return int(row[0]) if row else 0

    async def backends(self) -> list[int]:
        assert self.conn is not None
        return [r[0] for r in await (await self.conn.execute(
            BACKENDS, (self.dbname,))).fetchall()]

    async def run(self, stop: asyncio.Event) -> None:
        assert self.poller is not None
        while not stop.is_set():
            row = await (await self.poller.execute(CONNECTIONS, (self.dbname,))).fetchone()
            if row:
                self.open_max = max(self.open_max, row[0])
                self.busy_max = max(self.busy_max, row[1])
                self.listening = max(self.listening, row[2])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


def scrape(url: str) -> dict[str, float]:
    """The server's own counters (GET /metrics): requests and answer time per route."""
    try:
        text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    except httpx.HTTPError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name, key in (("chatsync_server_request_seconds_sum", "s"),
                          ("chatsync_server_requests_total", "n")):
            if line.startswith(name + "{"):
                route = line.split('route="', 1)[1].split('"', 1)[0]
                name_key = f"{key} {route}"
                found[name_key] = found.get(name_key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


@dataclass
class Costs:
    seconds: float
    server_cpu: float
    db_cpu: float
    pooler_cpu: float
    self_cpu: float
    machine_busy: float
    server_rss: float
    xacts: int
    conns_open: int
    conns_busy: int
    listening: int
    server: dict[str, float]  # deltas of scrape()


def machine_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(seconds: float, server: Server, pooler: PgBouncer, sampler: Sampler
                  ) -> Costs:
    """Sleep *seconds* while counting what the server, pooler and database spend."""
    pids, pooler_pids = server.pids(), [pooler.proc.pid] if pooler.proc else []
    k0 = await asyncio.to_thread(scrape, server.url)
    backends = await sampler.backends()  # pooled and LISTEN connections live on
    d0 = cpu_seconds(backends)
    x0, c0, p0, s0, m0 = (await sampler.xacts(), cpu_seconds(pids), cpu_seconds(pooler_pids),
                          self_cpu(), machine_ticks())
    sampler.open_max = sampler.busy_max = sampler.listening = 0
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    t0 = time.monotonic()
    rss = 0.0
    end = t0 + seconds
    while (left := end - time.monotonic()) > 0:
        rss = max(rss, rss_mb(pids))
        await asyncio.sleep(min(1.0, left))
    elapsed = time.monotonic() - t0
    c1, p1, s1, m1 = cpu_seconds(pids), cpu_seconds(pooler_pids), self_cpu(), machine_ticks()
    d1 = cpu_seconds(backends)
    stop.set()
    await sampling
    x1 = await sampler.xacts()
    k1 = await asyncio.to_thread(scrape, server.url)
    return Costs(elapsed, (c1 - c0) / elapsed * 100, (d1 - d0) / elapsed * 100,
                 (p1 - p0) / elapsed * 100,
                 (s1 - s0) / elapsed * 100,
                 (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * (os.cpu_count() or 1),
                 rss, x1 - x0, sampler.open_max, sampler.busy_max, sampler.listening,
                 {k: k1[k] - k0.get(k, 0) for k in k1})


# ---------------------------------------------------------------- one N


@dataclass
class Result:
    devices: int
    live: bool
    pushes_per_s: float = 0.0
    push_ms: list[float] = field(default_factory=list)
    deliver_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    busy: Costs | None = None
    idle: Costs | None = None
    setup_errors: int = 0
    drain_s: float = 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def probe_live(device: Device) -> bool:
    """Does this server know `wait_seconds`? (An older one answers 422 naming it.)"""
    try:
        await device.call("/v1/pull", {"cursor": device.cursor, "origin": device.origin,
                                       "wait_seconds": 0})
        return True
    except Refused as exc:
        if exc.status == 422 and "wait_seconds" in str(exc.body):
            return False
        raise


async def one_n(args: argparse.Namespace, n: int, *, pushing: bool, server: Server,
                pooler: PgBouncer, sampler: Sampler) -> Result:
    run = Run(args.wait, pull_before_push=args.pull_before_push)
    users = [str(uuid.uuid4()) for _ in range((n + 1) // 2)]
    # One client (one connection pool) per device, as each device has its own: httpcore
    # scans every connection of a pool for each request, so a shared pool of thousands of
    # connections made the generator, not the server, the bottleneck. The TLS context
    # (unused on plain http) is shared: building one per client costs milliseconds each.
    tls = ssl.create_default_context()
    clients = [httpx.AsyncClient(base_url=server.url, trust_env=False, verify=tls)
               for _ in range(n)]
    devices = [Device(run, clients[i], users[i // 2], token(args.secret, users[i // 2]))
               for i in range(n)]
    result = Result(n, True)
    tasks: list[asyncio.Task[None]] = []
    try:
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def set_up(device: Device) -> None:
            async with gate:
                try:
                    if pushing:
                        await device.push_conversation()
                    await device.pull()
                except (httpx.HTTPError, Refused) as exc:
                    result.setup_errors += 1
                    print(f"  setup error: {exc}", file=sys.stderr)

        t = time.monotonic()
        await asyncio.gather(*(set_up(d) for d in devices))
        run.live = result.live = await probe_live(devices[0])
        print(f"  {n} devices set up in {time.monotonic() - t:.1f} s; "
              f"{'live pull (wait_seconds)' if run.live else 'NO live pull: polling every 1 s'}",
              file=sys.stderr)
        # Live pulls start spread over a few seconds, and their first waits are spread over
        # a whole wait, as devices that came online at different times: re-waits then
        # arrive at their steady rate (devices / wait_seconds) from the start.
        spread = min(10.0, n / 500)
        for d in devices:
            tasks.append(asyncio.create_task(d.live(random.uniform(1, args.wait))))
            await asyncio.sleep(spread / n)
        await asyncio.sleep(2)
        if pushing:
            run.pushing = True
            tasks += [asyncio.create_task(d.pushing(args.interval)) for d in devices]
            await asyncio.sleep(min(args.interval, 5))  # warm-up, not counted
            run.window = Window(started=time.time(), recording=True)
            result.busy = await measure(args.duration, server, pooler, sampler)
            run.window.ended = time.time()
            run.pushing = False
            run.stopped.set()
            # Pushes still queued finish (and reach the other devices) before idling starts.
            pushers = tasks[n:]
            t = time.monotonic()
            await asyncio.wait(pushers, timeout=180)
            await asyncio.sleep(3)
            run.window.recording = False
            result.drain_s = time.monotonic() - t - 3
            w = run.window
            result.pushes_per_s = len(w.push_ms) / (w.ended - w.started)
            result.push_ms, result.deliver_ms, result.errors = w.push_ms, w.deliver_ms, w.errors
        await asyncio.sleep(SETTLE_S)
        run.window = Window(started=time.time(), recording=True)  # errors while idle count
        result.idle = await measure(args.idle, server, pooler, sampler)
        result.errors += run.window.errors
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()
    return result


# ---------------------------------------------------------------- output


def fmt(x: float, digits: int = 0) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


def table(results: list[Result]) -> str:
    lines = [
        "| devices | pull | pushes/s | push p50 / p95 / p99 ms | commit→device p50 / p99 ms"
        " (n) | errors | server CPU % | server RSS MB | PG conns open / busy / LISTEN"
        " | DB xact/s | xact per push | server + PG CPU ms per push | PostgreSQL CPU %"
        " | pooler CPU % | generator CPU % | machine busy % |",
        "|---:|---|---:|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        mode = "live" if r.live else "1 s polling"
        if r.busy:
            b = r.busy
            nan = float("nan")
            per_push = b.xacts / b.seconds / r.pushes_per_s if r.pushes_per_s else nan
            srv_ms = b.server_cpu * 10 / r.pushes_per_s if r.pushes_per_s else nan
            db_ms = b.db_cpu * 10 / r.pushes_per_s if r.pushes_per_s else nan
            lines.append(
                f"| {r.devices:,} | {mode} | {fmt(r.pushes_per_s, 1)} | "
                f"{fmt(pct(r.push_ms, 50))} / {fmt(pct(r.push_ms, 95))} / "
                f"{fmt(pct(r.push_ms, 99))} | {fmt(pct(r.deliver_ms, 50))} / "
                f"{fmt(pct(r.deliver_ms, 99))} ({len(r.deliver_ms):,}) | "
                f"{sum(r.errors.values()) + r.setup_errors} | {fmt(b.server_cpu, 1)} | "
                f"{fmt(b.server_rss)} | {b.conns_open} / {b.conns_busy} / {b.listening} | "
                f"{fmt(b.xacts / b.seconds, 1)} | {fmt(per_push, 1)} | {fmt(srv_ms, 1)} + "
                f"{fmt(db_ms, 1)} | {fmt(b.db_cpu, 1)} | "
                f"{fmt(b.pooler_cpu, 1)} |"
                f" {fmt(b.self_cpu, 1)} | {fmt(b.machine_busy)} |")
        if r.idle:
            i = r.idle
            lines.append(
                f"| {r.devices:,} idle | {mode} | 0 | | | "
                f"{sum(r.errors.values()) + r.setup_errors if not r.busy else ''} | "
                f"{fmt(i.server_cpu, 1)} | {fmt(i.server_rss)} | "
                f"{i.conns_open} / {i.conns_busy} / {i.listening} | {fmt(i.xacts / i.seconds, 1)}"
                f" | | | {fmt(i.db_cpu, 1)} | {fmt(i.pooler_cpu, 1)} | {fmt(i.self_cpu, 1)} | "
                f"{fmt(i.machine_busy)} |")
    return "\n".join(lines)


def server_side(results: list[Result]) -> str:
    """What the server itself counted: requests per second and its own answer time."""
    lines = []
    for r in results:
        for phase, c in (("pushing", r.busy), ("idle", r.idle)):
            if c is None or not c.server:
                continue
            k = c.server
            n_push, n_pull = k.get("n /v1/push", 0), k.get("n /v1/pull", 0)
            mean = k.get("s /v1/push", 0) / n_push * 1000 if n_push else float("nan")
            drained = f" (the last pushes drained {r.drain_s:.1f} s after the window)" \
                if phase == "pushing" and r.drain_s > 1 else ""
            lines.append(f"{r.devices:,} {phase}{drained}: {n_push / c.seconds:,.1f} push/s and "
                         f"{n_pull / c.seconds:,.1f} pull/s answered; push answered in "
                         f"{fmt(mean, 1)} ms on average inside the server")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def counts(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if any(not 0 < v <= MAX_DEVICES for v in values):
        raise argparse.ArgumentTypeError(f"device counts must be 1..{MAX_DEVICES}")
    return values


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=counts, default=[100, 1000],
                   help="device counts that push (comma-separated, default 100,1000)")
    p.add_argument("--idle-devices", type=counts, default=[5000],
                   help="device counts that only stay connected (default 5000; '' for none)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between a device's "
                   "pushes (default 10)")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds of pushing")
    p.add_argument("--idle", type=float, default=20.0, help="measured seconds of idleness")
    p.add_argument("--workers", type=int, default=2, help="chatsync serve --workers")
    p.add_argument("--pool-size", type=int, default=5, help="server.pool_size (per worker)")
    p.add_argument("--pooler-size", type=int, default=10,
                   help="PgBouncer's server connections to PostgreSQL")
    p.add_argument("--wait", type=float, default=30.0, help="a live pull's wait_seconds")
    p.add_argument("--no-pull-before-push", dest="pull_before_push", action="store_false",
                   help="push only (the engine's sync pulls before it pushes; this skips it)")
    p.add_argument("--admin-dsn", default=os.environ.get("CHATSYNC_BENCH_ADMIN_DSN", ADMIN_DSN))
    p.add_argument("--server-root", type=Path, default=ROOT,
                   help="the checkout whose `python -m daemon serve` runs (default this one)")
    args = p.parse_args(argv)
    if not MIN_INTERVAL_S <= args.interval <= 600:
        p.error(f"--interval must be {MIN_INTERVAL_S}..600 s")
    if not 1 <= args.duration <= MAX_DURATION_S or not 1 <= args.idle <= MAX_DURATION_S:
        p.error(f"--duration and --idle must be 1..{MAX_DURATION_S} s")
    if not 1 <= args.workers <= MAX_WORKERS:
        p.error(f"--workers must be 1..{MAX_WORKERS}")
    if not 1 <= args.wait <= 300:
        p.error("--wait must be 1..300 s")
    host = conninfo_to_dict(args.admin_dsn).get("host", LOOPBACK)
    if host not in (LOOPBACK, "localhost", "::1"):
        p.error("--admin-dsn must be a loopback PostgreSQL: this sends load only to loopback")
    args.secret = secrets.token_urlsafe(48)
    return args


def raise_open_files(devices: int) -> None:
    # Each device holds up to two connections, and each is a socket on both ends here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * devices + 1024))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * devices + 256:
        raise BenchError(f"the open-file limit ({hard}) is too low for {devices} devices")


def server_settings(args: argparse.Namespace, direct_dsn: str) -> dict[str, object]:
    settings: dict[str, object] = {"pool_size": args.pool_size, "pool_timeout_seconds": 10}
    config_text = (args.server_root / "daemon" / "config.py").read_text()
    # A server with live pull LISTENs on a direct session connection (a transaction
    # pooler cannot carry LISTEN); an older one has no such key and refuses unknown ones.
    if "listen_dsn" in config_text:
        settings["listen_dsn"] = direct_dsn
    if "live_wait_max_seconds" in config_text:
        settings["live_wait_max_seconds"] = args.wait
    return settings


async def run_all(args: argparse.Namespace, pooler: PgBouncer, dbname: str, direct: str,
                  servers: list[Server]) -> list[Result]:
    sampler = Sampler(args.admin_dsn, dbname)
    await sampler.connect()
    pooled = make_conninfo(direct, host=LOOPBACK, port=str(pooler.port))
    results = []
    plan = [(n, True) for n in args.devices] + [(n, False) for n in args.idle_devices]
    for n, pushing in plan:
        doing = f"pushing every {args.interval:g} s" if pushing else "idle"
        print(f"{n} devices, {doing}, "
              f"{args.workers} worker(s)", file=sys.stderr)
        server = Server(dsn=pooled, secret=args.secret, workers=args.workers,
                        settings=server_settings(args, direct), root=args.server_root)
        servers.append(server)
        await asyncio.to_thread(server.start)
        try:
            results.append(await one_n(args, n, pushing=pushing, server=server,
                                       pooler=pooler, sampler=sampler))
        finally:
            await asyncio.to_thread(server.stop)
            servers.remove(server)
        print(table(results[-1:]) + "\n" + server_side(results[-1:]), file=sys.stderr)
    await sampler.close()
    return results


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_open_files(max(args.devices + args.idle_devices))
    # SIGTERM stops like Ctrl-C: through the finally blocks that stop every process.
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops it even when started from a shell that had SIGINT ignored (`… &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    admin = conninfo_to_dict(args.admin_dsn)
    pooler = PgBouncer(str(admin.get("host") or LOOPBACK), int(admin.get("port") or 5432),
                       str(admin.get("user") or "postgres"), pool=args.pooler_size,
                       max_client=args.workers * args.pool_size + 10)
    servers: list[Server] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    budget = min(MAX_TOTAL_S, len(args.devices + args.idle_devices) * (
        240 + args.duration + args.idle + SETTLE_S + 30))
    try:
        pooler.start()
        with fresh_database(args.admin_dsn, args.server_root) as dbname:
            direct = make_conninfo(args.admin_dsn, dbname=dbname)
            try:
                results = asyncio.run(asyncio.wait_for(
                    run_all(args, pooler, dbname, direct, servers), budget))
            finally:
                for server in servers:
                    server.stop()
    except BenchError as exc:
        print(f"benchmarks.devices: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmarks.devices: stopped; every process it started is stopped",
              file=sys.stderr)
        return 130
    finally:
        pooler.stop()
    print(f"\n{started}, {os.cpu_count()} CPU, chatsync serve --workers {args.workers} "
          f"(pool_size {args.pool_size}) → PgBouncer transaction mode ({args.pooler_size} "
          f"server connections) → PostgreSQL; push every {args.interval:g} s, "
          f"{args.duration:g} s measured, idle {args.idle:g} s, wait_seconds {args.wait:g}\n")
    print(table(results))
    print("\n" + server_side(results))
    if any(not r.live for r in results):
        print("\nThe server has no live pull (422 on wait_seconds): devices polled every "
              "second, so commit→device latency is that of 1-second polling.")
    errors = Counter[str]()
    for r in results:
        errors += r.errors
    if errors:
        print("\nerrors: " + ", ".join(f"{k} x{v}" for k, v in errors.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
