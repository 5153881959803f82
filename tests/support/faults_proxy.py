"""A loopback TCP proxy for the fault tests: forwards to PostgreSQL, and on demand cuts every
connection (RST-like close), hangs them (keeps the sockets open but forwards nothing), or
refuses new ones. Threads, no asyncio, so it works from any test without an event loop.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

# SO_LINGER on, timeout 0: close() sends a reset, as a dropped NAT entry or a dead peer does.
LINGER_RESET = struct.pack("ii", 1, 0)


class FaultProxy:
    def __init__(self, target_port: int = 5432, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._hang = threading.Event()
        self._refuse = threading.Event()
        self._closed = threading.Event()
        self.accepted = 0
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def dsn(self, admin_dsn_params: dict[str, str], **extra: str) -> str:
        from psycopg.conninfo import make_conninfo

        params = {**admin_dsn_params, "host": "127.0.0.1", "port": str(self.port), **extra}
        return make_conninfo(**params)

    # --- faults ---------------------------------------------------------------------
    def cut(self) -> int:
        """Close every open connection now (both directions); returns how many pairs."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self.cuts += 1
        return len(conns) // 2

    def hang(self) -> None:
        """Stop forwarding in both directions; sockets stay open (a silent dead peer)."""
        self._hang.set()

    def refuse(self, on: bool = True) -> None:
        """Refuse (close at once) every new connection while on."""
        (self._refuse.set if on else self._refuse.clear)()

    def heal(self) -> None:
        """Forward again and accept new connections (hung ones stay hung: cut them)."""
        self._refuse.clear()
        if self._hang.is_set():
            self.cut()
            self._hang.clear()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._hang.clear()
        self.cut()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refuse.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed.is_set():
                if self._hang.is_set():
                    time.sleep(0.05)
                    if a.fileno() < 0 or b.fileno() < 0:
                        return
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
