"""The embedded PostgreSQL used when no DSN is configured.

pgserver ships PostgreSQL 16 in a wheel. It makes `chatsync run` work on a machine with no
database server at all; it is a default for trying chatsync, never used once remote.dsn or
CHATSYNC_REMOTE_DSN is set.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def embedded_dsn(data_dir: Path) -> str:
    """Start (or reuse) the embedded server in *data_dir*; returns its DSN.

    The server stops when the last process using it exits.
    """
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import; without $XDG_RUNTIME_DIR
        # that warns on stderr although the fallback it picks is fine.
        warnings.simplefilter("ignore")
        import pgserver  # imported here: only this fallback needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    log.info("using the embedded PostgreSQL in %s", data_dir)
    return server.get_uri()
