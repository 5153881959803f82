"""From configuration to the things a command needs: the store path and a remote DSN."""

from __future__ import annotations

from daemon.config import Config
from remote.connect import connect
from remote.embedded import embedded_dsn
from remote.migrate import migrate


def remote_dsn(config: Config) -> str:
    """The configured DSN, or the embedded server's (migrated on first use)."""
    if config.remote.dsn:
        return config.remote.dsn
    dsn = embedded_dsn(config.local.resolved_path.parent / "postgres")
    with connect(dsn) as conn:
        migrate(conn)
    return dsn
