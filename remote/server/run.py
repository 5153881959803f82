"""Starting `chatsync serve`: key check, database (embedded by default), uvicorn workers."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from daemon.config import Config
from remote.server.settings import require_key

FACTORY = "remote.server.app:create_app"


def serve(config: Config, config_path: str | None, workers: int) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    require_key(config.server)  # before starting anything
    import uvicorn

    from remote.dsn import mask_dsn

    if config.server.dsn:
        dsn = config.server.dsn
    else:
        dsn = _embedded(config)
        # Workers rebuild the configuration; this points them at the same database.
        os.environ["CHATSYNC_SERVER_DSN"] = dsn
    if config_path:
        os.environ["CHATSYNC_CONFIG"] = config_path
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker is a process: metrics go to files a scrape sums (see metrics.py).
        metrics_dir = tempfile.mkdtemp(prefix="chatsync-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    keys = " and ".join(
        k for k, on in (("JWKS " + config.server.jwks_url, bool(config.server.jwks_url)),
                        ("the HS256 secret", bool(config.server.jwt_secret.get_secret_value())))
        if on)
    print(f"chatsync serve: http://{config.server.listen} ({workers} worker(s)), database "
          f"{mask_dsn(dsn)}, tokens checked with {keys}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(
            FACTORY, factory=True, host=config.server.host, port=config.server.port,
            workers=workers, log_level=config.daemon.log_level, access_log=False,
            server_header=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _embedded(config: Config) -> str:
    # The same embedded PostgreSQL `chatsync run` uses, migrated as `chatsync migrate` does.
    from remote.connect import connect
    from remote.embedded import embedded_dsn
    from remote.migrate import migrate

    dsn = embedded_dsn(config.local.resolved_path.parent / "postgres")
    with connect(dsn) as conn:
        migrate(conn)
    return dsn
