"""The processes `benchmarks.devices` starts and measures: PgBouncer (tests/support's),
`chatsync serve` with several workers.

Kept apart from the device emulation: these are plain subprocess and /proc helpers. Every
process is started in its own session (process group), so stopping it also stops what it
spawned (uvicorn's workers); nothing is killed by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.procs import ROOT, SetupError, free_port, listening, stop_group, wait_for
from tests.support.servers import server_env, write_server_config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# The benchmark's errors and PgBouncer's (tests/support/pgbouncer.py) are one kind.
BenchError = SetupError


class Server:
    """`python -m daemon serve --workers K` with its own config file, env-held secret."""

    def __init__(self, *, dsn: str, secret: str, workers: int,
                 settings: dict[str, object], python: str = sys.executable,
                 root: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.root, self.python = workers, root, python
        self.dir = Path(tempfile.mkdtemp(prefix="chatsync-devices-srv-"))
        self.config = write_server_config(self.dir / "server.toml", port=self.port, dsn=dsn,
                                          **settings)
        self.log_path = self.dir / "server.log"
        self.env = server_env(secret)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "daemon", "--config", str(self.config), "serve",
                 "--workers", str(self.workers)],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"the server exited {self.proc.returncode}:\n{self.log()}")
            # every worker must be up, not only the first to bind
            expected = 1 + self.workers if self.workers > 1 else 1
            return listening(self.port) and len(self.pids()) >= expected

        wait_for(up, 60, "the server to listen", error=BenchError)
        time.sleep(1.0)  # workers finish their start-up (pool, listener)
        return self

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc is not None else []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() \
            else ""

    def stop(self) -> None:
        stop_group(self.proc, 30)
        log = self.log()
        if "Traceback" in log or "ERROR" in log or "WARNING" in log:
            kept = Path(tempfile.gettempdir()) / f"chatsync-devices-server-{self.port}.log"
            shutil.copy(self.log_path, kept)
            print(f"  the server logged warnings or errors: {kept}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


def tree(root: int) -> list[int]:
    """*root* and all its descendants, from /proc (the server's uvicorn workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of *pids* so far (/proc/<pid>/stat utime, stime)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


def rss_mb(pids: list[int]) -> float:
    """Resident set of *pids* together (/proc/<pid>/statm)."""
    pages = 0
    for pid in pids:
        try:
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
    return pages * PAGE_KB / 1024
