"""Real `chatsync run` processes for the daemon tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from daemon import control

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll *check* until it returns something truthy; fail with *what* after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def write_config(path: Path, *, store: Path, dsn: str, socket_path: Path,
                 **sync: Any) -> Path:
    lines = ["[local]", f"path = {json.dumps(str(store))}", "[remote]",
             f"dsn = {json.dumps(dsn)}", "[sync]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in sync.items()]
    lines += ["[daemon]", f"socket = {json.dumps(str(socket_path))}", 'log_level = "debug"']
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProc:
    """One `python -m daemon run` with its own config, socket and log file."""

    def __init__(self, workdir: Path, store: Path, dsn: str, *, watch: str = "auto",
                 env: dict[str, str] | None = None, **sync: Any) -> None:
        # Unix socket paths are limited to ~108 bytes; pytest's tmp_path can be longer.
        self.sockdir = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
        self.socket = self.sockdir / "ctl.sock"
        self.config = write_config(workdir / f"config-{id(self)}.toml", store=store, dsn=dsn,
                                   socket_path=self.socket, **sync)
        self.log_path = workdir / f"daemon-{id(self)}.log"
        self.watch = watch
        self.env = {**os.environ, **(env or {})}
        self.env.pop("CHATSYNC_REMOTE_DSN", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> DaemonProc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "run",
                 "--watch", self.watch],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            wait_for(self._ready, 30, "the daemon to answer on its socket")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
        return control.ping(self.socket)

    def get(self, route: str) -> httpx.Response:
        answer = control.request(self.socket, "GET", route)
        assert answer is not None, f"daemon not answering:\n{self.log()}"
        return answer

    def status(self) -> dict[str, Any]:
        return self.get("/status").json()

    def syncs(self) -> dict[str, Any]:
        return self.status()["daemon"]["syncs"]

    def idle_after(self, n: int) -> bool:
        """At least *n* syncs done and none running or pending."""
        d = self.status()["daemon"]
        return d["syncs"]["total"] >= n and d["state"] != "syncing"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(self.config), *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.sockdir, ignore_errors=True)







def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
