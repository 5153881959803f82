"""From configuration to the things a command needs: a remote DSN, a sync engine."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import Config
from daemon.engine import SyncEngine
from remote.connect import connect
from remote.embedded import embedded_dsn
from remote.migrate import migrate

if TYPE_CHECKING:
    from remote.http_transport import HttpTransport


def remote_dsn(config: Config) -> str:
    """The configured DSN, or the embedded server's (migrated on first use)."""
    if config.remote.dsn:
        return config.remote.dsn
    dsn = embedded_dsn(config.local.resolved_path.parent / "postgres")
    with connect(dsn) as conn:
        migrate(conn)
    return dsn


def make_engine(config: Config, **options: Any) -> SyncEngine:
    """The sync engine the configuration asks for: HTTP with `remote.url`, else direct."""
    path = config.local.resolved_path
    batch_size = config.sync.batch_size
    if not config.remote.url:
        return SyncEngine(path, remote_dsn(config), batch_size=batch_size, **options)
    return SyncEngine(path, transport_factory=http_transport_factory(config),
                      batch_size=batch_size, **options)


def http_transport_factory(
    config: Config,
) -> Callable[[sqlite3.Connection, Path, str], HttpTransport]:
    """Builds the HTTP transport on a store connection: its session tokens live there."""
    # Imported here: direct mode needs none of it.
    from daemon.tokens import TokenKeeper
    from remote.auth_client import AuthClient
    from remote.http_transport import HttpTransport

    remote = config.remote

    def make(conn: sqlite3.Connection, store_path: Path, origin: str) -> HttpTransport:
        client = AuthClient(remote.auth_url, remote.anon_key) if remote.auth_url else None
        return HttpTransport(remote.url, TokenKeeper(conn, store_path, client), origin)

    return make
