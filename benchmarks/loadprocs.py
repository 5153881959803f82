"""The processes `benchmarks.devices` starts and measures: PgBouncer, `chatsync serve`.

Kept apart from the device emulation: these are plain subprocess and /proc helpers. Every
process is started in its own session (process group), so stopping it also stops what it
spawned (uvicorn's workers); nothing is killed by name.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

PGBOUNCER_INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
max_client_conn = {max_client}
default_pool_size = {pool}
reserve_pool_size = 0
max_db_connections = {pool}
ignore_startup_parameters = extra_float_digits,options
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
admin_users = postgres
"""


class BenchError(Exception):
    """A sentence for the operator: the benchmark cannot go on."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def stop_group(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15) -> None:
    """SIGTERM the process group *proc* leads, SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


class PgBouncer:
    """PgBouncer in transaction mode on a free loopback port, in front of *host*:*port*.

    It refuses to run as root: as root it gets `-u postgres` and a directory that user owns.
    """

    def __init__(self, host: str, port: int, user: str, *, pool: int, max_client: int) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise BenchError("PgBouncer is not installed (apt-get install -y pgbouncer)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chatsync-devices-pgb-"))
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(PGBOUNCER_INI.format(
            host=host, port=port, listen=self.port, dir=self.dir, pool=pool,
            max_client=max_client))
        self.cmd = [binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.cmd[1:1] = ["-u", "postgres"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"pgbouncer exited {self.proc.returncode}: {self.log()}")
            return _listening(self.port)

        wait_for(up, 15, "PgBouncer to listen")
        return self

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        stop_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """`python -m daemon serve --workers K` with its own config file, env-held secret."""

    def __init__(self, *, dsn: str, secret: str, workers: int,
                 settings: dict[str, object], python: str = sys.executable,
                 root: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.root, self.python = workers, root, python
        self.dir = Path(tempfile.mkdtemp(prefix="chatsync-devices-srv-"))
        lines = ["[local]", f"path = {json.dumps(str(self.dir / 'store' / 'x.db'))}",
                 "[daemon]", 'log_level = "warning"', "[server]",
                 f'listen = "127.0.0.1:{self.port}"', f"dsn = {json.dumps(dsn)}"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        self.config = self.dir / "server.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log_path = self.dir / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSYNC_")}
        self.env["CHATSYNC_SERVER_JWT_SECRET"] = secret
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
            return _listening(self.port) and len(self.pids()) >= expected

        wait_for(up, 60, "the server to listen")
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
