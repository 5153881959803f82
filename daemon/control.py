"""The control socket's server: HTTP over a Unix socket (mode 0600, same user only).

Routes: GET /health, GET /status, GET /metrics (Prometheus text), POST /sync. The JSON
bodies are daemon/protocol.py's messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

# The client side lives apart so that `chatsync status` and `sync-now` need not import
# this server; `control.request` and `control.ping` stay where they always were.
from daemon.control_client import get_status, ping, post_sync, request
from daemon.protocol import ErrorReply, Health, Route, Status, SyncReply

__all__ = [
    "ControlApi", "ControlServer", "SocketInUse", "get_status", "ping", "post_sync", "request",
]

log = logging.getLogger(__name__)


class SocketInUse(Exception):
    """Another live process already answers on the control socket path."""


class ControlApi(Protocol):
    def health(self) -> Health: ...
    def status(self) -> Status: ...
    def metrics(self) -> str: ...
    def sync(self) -> SyncReply | ErrorReply: ...


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    api: ControlApi

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # The socket's mode already keeps other users out; this holds even if the socket
        # or its directory were made more permissive.
        creds = request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            log.warning("refused a control connection from uid %d", uid)
            return False
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "chatsync"

    def do_GET(self) -> None:
        api = self.server.api
        route = ("GET", self.path)
        if route == Route.HEALTH:
            health = api.health()  # a process whose sync loop died is not healthy
            self._json(200 if health.ok else 503, health)
        elif route == Route.STATUS:
            self._json(200, api.status())
        elif route == Route.METRICS:
            self._send(200, api.metrics().encode(), "text/plain; version=0.0.4")
        else:
            self._json(404, ErrorReply(f"no route GET {self.path}"))

    def do_POST(self) -> None:
        if ("POST", self.path) == Route.SYNC:
            answer = self.server.api.sync()
            # A refusal is the daemon stopping (or its loop dead): the CLI syncs itself.
            self._json(200 if isinstance(answer, SyncReply) else 503, answer)
        else:
            self._json(404, ErrorReply(f"no route POST {self.path}"))

    def _json(self, code: int, body: Health | Status | SyncReply | ErrorReply) -> None:
        self._send(code, json.dumps(body.to_json()).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "control-socket"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: " + format, *args)


class ControlServer:
    """Binds at construction (so a clash is reported before anything starts)."""

    def __init__(self, path: Path, api: ControlApi) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.is_socket():
            if ping(path):
                raise SocketInUse(f"another chatsync daemon already answers on {path}")
            path.unlink()  # left behind by a daemon that died
        elif path.exists() or path.is_symlink():
            # Only ever remove a socket: daemon.socket naming a file is a mistake to report.
            raise SocketInUse(f"{path} exists and is not a socket; chatsync will not remove it")
        # Created 0600 from the start (no window with a wider mode); chmod for certainty.
        old_umask = os.umask(0o177)
        try:
            self._server = _Server(str(path), _Handler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._server.api = api
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="control", daemon=True
        )

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self.path.is_socket():  # ours, unless someone replaced it meanwhile
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
