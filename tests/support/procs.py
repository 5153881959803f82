"""Plain process helpers: waiting, free ports, stopping a process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent.parent  # the repository


class SetupError(Exception):
    """A helper process cannot run here or did not come up: a sentence for the operator."""


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "condition", *,
             error: type[Exception] = AssertionError) -> T:
    """Poll *check* until it returns something truthy; raise *error* naming *what* after
    *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This environment without chatsync's own settings (but CHATSYNC_LONG), plus *extra*:
    what a child reads is its config file and what the caller hands it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATSYNC_") or k == "CHATSYNC_LONG"}
    env.update(extra)
    return env


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def stop_group(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15) -> None:
    """SIGTERM the process group *proc* leads (started with start_new_session=True),
    SIGKILL it if it lingers: what it spawned stops too, and nothing is killed by name."""
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
