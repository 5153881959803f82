"""The control socket's client (daemon/control_client.py): an answer, or None when no
daemon answers — a socket file left behind, a path that is not a socket, a peer that hangs
up before a whole answer. Real Unix sockets; a running daemon's answers are in
test_daemon_control.py and test_cli_imports.py."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import control, control_client
from daemon.protocol import DaemonState, ErrorReply, Health, Status


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Unix socket paths are limited to ~108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="cs-", dir="/tmp") as d:
        yield Path(d)


class _Api:
    def health(self) -> Health:
        return Health(ok=True, pid=1, state=DaemonState.IDLE)

    def status(self) -> Status:
        return Status(store={"note": "é" * 100_000}, daemon=None)

    def metrics(self) -> str:
        return "chatsync_syncs_total 3\n"

    def sync(self) -> ErrorReply:
        return ErrorReply("stopping")


def test_answers_from_the_daemons_server(sockdir: Path) -> None:
    path = sockdir / "ctl.sock"
    server = control.ControlServer(path, _Api()).start()
    try:
        status = control_client.request(path, "GET", "/status")
        assert status is not None and status.status_code == 200
        assert status.json() == {"note": "é" * 100_000, "daemon": None}  # a long body
        assert status.headers["content-type"] == "application/json"
        metrics = control_client.request(path, "GET", "/metrics")
        assert metrics is not None and metrics.text == "chatsync_syncs_total 3\n"
        refused = control_client.request(path, "POST", "/sync", read_timeout=None)
        assert refused is not None and refused.status_code == 503
        assert refused.json() == {"error": "stopping"}
        missing = control_client.request(path, "GET", "/nope")
        assert missing is not None and missing.status_code == 404
        assert control.ping(path) and control.request is control_client.request
    finally:
        server.stop()
    assert not path.exists()


def test_no_daemon_is_none(sockdir: Path) -> None:
    assert control_client.request(sockdir / "absent.sock", "GET", "/status") is None
    regular = sockdir / "file.sock"
    regular.write_text("")
    assert control_client.request(regular, "GET", "/status") is None
    stale = sockdir / "stale.sock"  # bound by a process that died: refused
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    assert stale.is_socket() and not control_client.ping(stale)
    # and a new daemon takes the path over
    server = control.ControlServer(stale, _Api()).start()
    try:
        assert control_client.ping(stale)
    finally:
        server.stop()


def test_a_peer_hanging_up_early_is_no_daemon(sockdir: Path) -> None:
    path = sockdir / "rude.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()

        def rude() -> None:
            for answer in (b"", b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}"):
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)

        thread = threading.Thread(target=rude, daemon=True)
        thread.start()
        assert control_client.request(path, "GET", "/status") is None  # nothing at all
        assert control_client.request(path, "GET", "/status") is None  # body cut short
        thread.join(5)
        assert not thread.is_alive()  # both requests reached the peer and were answered
