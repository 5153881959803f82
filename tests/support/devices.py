"""Devices that sync (directly, or through `chatsync serve` with real tokens), and
comparable views of stores and the remote."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.string import TextLoader

from daemon.engine import SyncEngine
from daemon.report import SyncReport
from daemon.tokens import TokenKeeper, store_session
from localstore import Store
from localstore.inbox import CONVERSATION_COMPARED, MESSAGE_COMPARED
from localstore.models import error_text
from localstore.timestamps import instant, iso
from remote.auth_client import AuthClient
from remote.http_transport import HttpTransport
from remote.transport import Transport
from tests.support.auth_standin import AuthStandIn
from tests.support.servers import ServerProc
from tests.support.stores import LOCAL_DIRTY

PASSWORD = "pw-for-tests"  # every user's, at the auth stand-in


class Device:
    """One store file and the engine that syncs it (a laptop, a desktop)."""

    def __init__(self, path: Path, dsn: str, *, batch_size: int = 1000) -> None:
        self.path = path
        self.store = Store(path)
        self.engine = SyncEngine(path, dsn, batch_size=batch_size)

    def sync(self) -> SyncReport:
        report = self.engine.sync()
        assert report.ok, report.error
        return report

    def close(self) -> None:
        self.engine.close()
        self.store.close()


class HttpDevice(Device):
    """A store signed in at the auth server, syncing through the sync server only."""

    def __init__(self, path: Path, server: ServerProc, auth: AuthStandIn,
                 email: str = "alice@example.com", **engine: int) -> None:
        self.path, self.auth = path, auth
        self.store = Store(path)
        client = AuthClient(auth.url, "anon")
        store_session(self.store.conn, client.sign_in_with_password(email, PASSWORD))
        self.keepers: list[TokenKeeper] = []

        def transport(conn: sqlite3.Connection, store_path: Path, origin: str) -> Transport:
            keeper = TokenKeeper(conn, store_path, AuthClient(auth.url, "anon"))
            self.keepers.append(keeper)
            return HttpTransport(server.url, keeper, origin)

        self.engine = SyncEngine(path, transport_factory=transport, **engine)


def _norm(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in ("created_at", "timestamp"):
        return instant(value if isinstance(value, str) else iso(value))
    if column == "user_id":
        return str(value).lower()
    if isinstance(value, bool):
        return int(value)
    return value


def _effective(row: Any, column: str) -> Any:
    # The error text a local row stands for on the remote (see models.error_text).
    if column == "error_message":
        return error_text(row["error"], row["error_message"])
    return row[column]


def local_view(store: Store) -> dict[str, dict[str, tuple[Any, ...]]]:
    """The client-owned content of a store, comparable across devices and with the remote."""
    conn = store.conn
    convs = {
        r["id"]: tuple(_norm(c, r[c]) for c in CONVERSATION_COMPARED)
        for r in conn.execute("SELECT * FROM conversations WHERE user_id IS NOT NULL")
    }
    msgs = {
        r["id"]: tuple(_norm(c, _effective(r, c)) for c in MESSAGE_COMPARED)
        for r in conn.execute(
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.user_id IS NOT NULL"
        )
    }
    return {"conversations": convs, "messages": msgs}


REMOTE_CONVERSATIONS = "SELECT id, user_id, title, created_at, is_active FROM chat_sessions"
REMOTE_MESSAGES = """
SELECT id, session_id AS conversation_id, role, content, model, coalesce(total_tokens, 0),
       coalesce(input_tokens, 0), coalesce(output_tokens, 0), user_message_id,
       coalesce(content_type, 'text'), coalesce(elapsed_time, 0), completion_id,
       message_timestamp AS timestamp, (error_message IS NOT NULL)::int AS error, error_message
FROM chat_messages
"""


def text_times(conn: psycopg.Connection) -> psycopg.Connection:
    """*conn*, reading timestamptz as UTC ISO text: the app's rows may hold 'infinity' or
    years Python's datetime cannot."""
    conn.adapters.register_loader("timestamptz", TextLoader)
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    return conn


def remote_view(conn: psycopg.Connection) -> dict[str, dict[str, tuple[Any, ...]]]:
    convs = {
        r[0]: tuple(_norm(c, v) for c, v in zip(CONVERSATION_COMPARED, r[1:], strict=True))
        for r in conn.execute(REMOTE_CONVERSATIONS)
    }
    msgs = {
        r[0]: tuple(_norm(c, v) for c, v in zip(MESSAGE_COMPARED, r[1:], strict=True))
        for r in conn.execute(REMOTE_MESSAGES)
    }
    return {"conversations": convs, "messages": msgs}


def dirty_count(store: Store) -> int:
    return int(store.conn.execute(LOCAL_DIRTY).fetchone()[0])


def conflicts(device: Device) -> list[dict[str, Any]]:
    """The conflicts *device*'s pulls recorded, with both versions."""
    rows = device.store.conn.execute(
        "SELECT kind, id, resolution, local_version, remote_version FROM conflicts")
    return [dict(r) for r in rows]
