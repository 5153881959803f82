"""systemd integration: sd_notify readiness/status, and a user unit to install."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

UNIT_NAME = "chatsync.service"

UNIT_TEMPLATE = """\
[Unit]
Description=chatsync: sync the local chat store to PostgreSQL
Documentation=https://github.com/chatsync/chatsync#the-service
After=network-online.target

[Service]
Type=notify
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
# chatsync finishes or abandons the batch in flight within this bound after SIGTERM.
TimeoutStopSec=30
# Secrets such as CHATSYNC_REMOTE_DSN belong here, not in config.toml.
EnvironmentFile=-%h/.config/chatsync/env

[Install]
WantedBy=default.target
"""


def notify(state: str) -> bool:
    """Send *state* (e.g. "READY=1") to systemd; a no-op without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False  # systemd gone or not listening: nothing to tell
    return True


def unit_text(config_path: str | None = None) -> str:
    """The unit, running this interpreter's chatsync so a venv install works as is."""
    command = [sys.executable, "-m", "daemon"]
    if config_path:
        command += ["--config", str(Path(config_path).resolve())]
    command.append("run")
    return UNIT_TEMPLATE.format(exec_start=" ".join(command))


def user_unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME
