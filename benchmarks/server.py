"""A real `chatsync serve` for the benchmark's HTTP scenario, and access tokens it accepts.

Deliberately not tests/server_support.py: the benchmark should not import the tests. The
server checks tokens with an HS256 secret handed over in CHATSYNC_SERVER_JWT_SECRET, as a
deployment with the project's legacy JWT secret would; its log goes to a file, never to the
benchmark's output.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

REPO = Path(__file__).resolve().parent.parent
SECRET_ENV = "CHATSYNC_SERVER_JWT_SECRET"
AUDIENCE = "authenticated"
TOKEN_LIFETIME_S = 3600
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# The session a signed-in device holds; no refresh token: the benchmark's token outlives it.
STORE_TOKEN = """
UPDATE auth_session SET access_token = :access_token, refresh_token = NULL,
    expires_at = :expires_at, refresh_refused = NULL
"""


class ServerFailed(RuntimeError):
    """The server did not come up, or exited; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def access_token(secret: str, user_id: str, email: str,
                 lifetime_s: int = TOKEN_LIFETIME_S) -> tuple[str, int]:
    """An HS256 access token as the auth server issues it, and its expiry (Unix seconds)."""
    now = int(time.time())
    claims = {"sub": user_id, "email": email, "aud": AUDIENCE, "role": "authenticated",
              "iat": now, "exp": now + lifetime_s}
    return jwt.encode(claims, secret, algorithm="HS256"), now + lifetime_s


def sign_in(store: Path, secret: str, user_id: str, email: str) -> None:
    """Give *store*'s signed-in user a fresh access token (the row is the workload's)."""
    token, expires_at = access_token(secret, user_id, email)
    conn = sqlite3.connect(store)
    try:
        with conn:
            if conn.execute(STORE_TOKEN, {"access_token": token,
                                          "expires_at": expires_at}).rowcount != 1:
                raise RuntimeError(f"{store} has no signed-in user to give a token to")
    finally:
        conn.close()


class SyncServer:
    """One `python -m daemon serve --workers 1` on a free port, with its own config and log."""

    def __init__(self, workdir: Path, dsn: str, secret: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        lines = ["[local]", f"path = {json.dumps(str(workdir / 'unused-store.db'))}",
                 "[daemon]", 'log_level = "warning"',
                 "[server]", f'listen = "127.0.0.1:{self.port}"', f"dsn = {json.dumps(dsn)}"]
        self.config = workdir / "server.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log_path = workdir / "server.log"
        # Nothing of the benchmark's own chatsync settings leaks into the server.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSYNC_")}
        self.env[SECRET_ENV] = secret
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SyncServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "serve",
                 "--workers", "1"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"the sync server did not answer within "
                                   f"{START_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerFailed(f"the sync server exited with {self.proc.returncode}:\n"
                               f"{self.log_tail()}")
        try:
            return httpx.get(self.url + "/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
