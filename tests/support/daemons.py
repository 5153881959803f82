"""Real `chatsync run` processes (and one-shot `chatsync` commands), for tests and benchmarks.

One config writer (`write_config`), one clean child environment (`child_env`), one daemon
wrapper (`DaemonProc`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from daemon import control
from tests.support.procs import ROOT, child_env, wait_for


def write_config(workdir: Path, *, store: Path, dsn: str, **sync: Any) -> tuple[Path, Path]:
    """A config file in *workdir* and the control socket path it names.

    *sync* are `[sync]` settings. The socket lives in a fresh short directory under /tmp:
    Unix socket paths are limited to ~108 bytes, and pytest's tmp_path can be longer.
    """
    sockdir = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    socket_path = sockdir / "ctl.sock"
    lines = ["[local]", f"path = {json.dumps(str(store))}", "[remote]",
             f"dsn = {json.dumps(dsn)}", "[sync]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in sync.items()]
    lines += ["[daemon]", f"socket = {json.dumps(str(socket_path))}", 'log_level = "debug"']
    path = workdir / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, socket_path


def cli(config: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`chatsync --config CONFIG ARGS…`, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), *args], cwd=ROOT,
        env=env or child_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def spawn(config: Path, *args: str, env: dict[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen[bytes]:
    """`chatsync --config CONFIG ARGS…` started, its output appended to *log*."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config), *args], cwd=ROOT,
            env=env or child_env(), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


class DaemonProc:
    """One `chatsync run --watch WATCH` on *config*, answering on *socket*, logging to *log*.

    `DaemonProc.for_store(...)` writes the config too. *env*: variables over `child_env()`.
    """

    def __init__(self, config: Path, socket: Path, log: Path, *, watch: str = "auto",
                 env: dict[str, str] | None = None) -> None:
        self.config, self.socket, self.log_path, self.watch = config, socket, log, watch
        self.env = child_env(**(env or {}))
        self.sockdir: Path | None = None  # removed on close() when this made it
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_store(cls, workdir: Path, store: Path, dsn: str, *, watch: str = "auto",
                  env: dict[str, str] | None = None, **sync: Any) -> DaemonProc:
        """A daemon for *store* and *dsn*, its config (with *sync* settings) in *workdir*."""
        config, socket_path = write_config(workdir, store=store, dsn=dsn, **sync)
        proc = cls(config, socket_path, workdir / f"daemon-{config.stem}.log", watch=watch,
                   env=env)
        proc.sockdir = socket_path.parent
        return proc

    def start(self, *, wait: bool = True) -> DaemonProc:
        self.proc = spawn(self.config, "run", "--watch", self.watch, env=self.env,
                          log=self.log_path)
        if wait:
            wait_for(self._ready, 30, "the daemon to answer on its socket")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
        return control.ping(self.socket)

    def get(self, route: str) -> control.Answer:
        answer = control.request(self.socket, "GET", route)
        assert answer is not None, f"daemon not answering:\n{self.log()}"
        return answer

    def get_text(self, route: str) -> str:
        return self.get(route).text

    def status(self) -> dict[str, Any]:
        return self.get("/status").json()

    def syncs(self) -> dict[str, Any]:
        return self.status()["daemon"]["syncs"]

    def idle_after(self, n: int) -> bool:
        """At least *n* syncs done and none running or pending."""
        d = self.status()["daemon"]
        return d["syncs"]["total"] >= n and d["state"] != "syncing"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A `chatsync` command on this daemon's config and environment."""
        return cli(self.config, *args, env=self.env, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        if self.sockdir is not None:
            shutil.rmtree(self.sockdir, ignore_errors=True)
