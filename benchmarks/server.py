"""A real `chatsync serve` for the benchmark's HTTP scenario, and access tokens it accepts.

The server is tests/support/servers.py's `ServerProc` (one worker, its log in a file,
never in the benchmark's output); it checks tokens with an HS256 secret handed over in
CHATSYNC_SERVER_JWT_SECRET, as a deployment with the project's legacy JWT secret would.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path

from tests.support.servers import ServerProc, hs_token

TOKEN_LIFETIME_S = 3600
START_TIMEOUT_S = 60
# The session a signed-in device holds; no refresh token: the benchmark's token outlives it.
STORE_TOKEN = """
UPDATE auth_session SET access_token = :access_token, refresh_token = NULL,
    expires_at = :expires_at, refresh_refused = NULL
"""


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def sign_in(store: Path, secret: str, user_id: str, email: str) -> None:
    """Give *store*'s signed-in user a fresh access token (the row is the workload's)."""
    expires_at = int(time.time()) + TOKEN_LIFETIME_S
    token = hs_token(user_id, secret, exp_in=TOKEN_LIFETIME_S, email=email)
    conn = sqlite3.connect(store)
    try:
        with conn:
            if conn.execute(STORE_TOKEN, {"access_token": token,
                                          "expires_at": expires_at}).rowcount != 1:
                raise RuntimeError(f"{store} has no signed-in user to give a token to")
    finally:
        conn.close()


class SyncServer(ServerProc):
    """`chatsync serve --workers 1` on a free port, its config and log in *workdir*."""

    def __init__(self, workdir: Path, dsn: str, secret: str) -> None:
        super().__init__(workdir, dsn, secret=secret)

    def start(self, *, wait: bool = True, workers: int = 1,
              timeout: float = START_TIMEOUT_S) -> SyncServer:
        super().start(wait=wait, workers=workers, timeout=timeout)
        return self
