"""The client side of the control socket, for `chatsync status`, `sync-now` and the tests.

Kept apart from the server (daemon/control.py) and free of HTTP libraries so that a
command a person types pays only for `socket` and `json`: httpx took ~150 ms to import
and the standard library's http.client (with email and ssl) ~20 ms, for one request to a
server that is ours. The request is HTTP/1.0 with `Connection: close`, so the answer is
the status line, the headers and a body that ends where the connection does — which is
what the daemon's `http.server` handler sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.protocol import ErrorReply, Route, Status, SyncReply

CONNECT_TIMEOUT_S = 1.0


class Answer:
    """The daemon's answer: status code, headers (lower-case names) and body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, content: bytes, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Answer {self.status_code}, {len(self.content)} bytes>"

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def get_status(path: Path) -> Status | None:
    """The daemon's status, or None when no daemon answers on *path*."""
    answer = request(path, *Route.STATUS)
    if answer is None or answer.status_code != 200:
        return None
    return Status.from_json(answer.json())


def post_sync(path: Path) -> SyncReply | ErrorReply | None:
    """Ask the daemon for a sync now and wait for it: its report, its refusal (stopping),
    or None when no daemon answers on *path*."""
    answer = request(path, *Route.SYNC, read_timeout=None)
    if answer is None:
        return None
    if answer.status_code == 200:
        return SyncReply.from_json(answer.json())
    return ErrorReply.from_json(answer.json())


def ping(path: Path) -> bool:
    """Whether a daemon answers on *path*."""
    return request(path, *Route.HEALTH, read_timeout=2.0) is not None


def request(
    path: Path, method: str, route: str, *, read_timeout: float | None = 10.0
) -> Answer | None:
    """The daemon's answer, or None when no daemon listens on *path*.

    A read that takes longer than *read_timeout* (None: wait as long as it takes, as
    `sync-now` does) raises TimeoutError.
    """
    if not path.is_socket():
        return None
    import socket  # only when there may be a daemon to ask

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except TimeoutError:
            raise
        except OSError:  # refused (left behind by a daemon that died), gone, not ours
            return None
        sock.settimeout(read_timeout)
        try:
            sock.sendall(f"{method} {route} HTTP/1.0\r\nHost: chatsync\r\n"
                         "Connection: close\r\nContent-Length: 0\r\n\r\n".encode("ascii"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):  # the daemon went away meanwhile
            return None
    return _parse(b"".join(chunks))


def _parse(raw: bytes) -> Answer | None:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if not sep or len(status) < 2 or not status[0].startswith("HTTP/") \
            or not status[1].isdigit():
        return None  # closed before a whole answer: as good as no daemon
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if length.isdigit() and len(body) < int(length):
        return None
    return Answer(int(status[1]), body, headers)
