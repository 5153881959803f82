"""Keeping the signed-in user's access token fresh, one refresh at a time.

The session lives in the store's `auth_session` (schema v4). A refresh rotates the refresh
token and the auth server revokes a session whose old token is used again, so:

- one refresh at a time per store, across threads *and* processes (a flock on
  `<store>.refresh-lock`); whoever waited re-reads the store and uses what the other wrote;
- the rotated tokens are written to the store (compare-and-set on the old refresh token)
  *before* the new access token is used, so a crash can never leave only the server knowing
  the new refresh token;
- a refusal for good is recorded (`refresh_refused`): the device is signed out until a new
  sign-in, and no further refresh is tried with a token the server has revoked.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localstore.transaction import write_transaction
from remote.auth_client import AuthClient, AuthRefused, Tokens

# Refresh this long before the access token expires (Supabase issues one-hour tokens).
REFRESH_MARGIN_S = 60

READ_SESSION = """
SELECT user_id, email, access_token, refresh_token, expires_at, refresh_refused
FROM auth_session
"""
STORE_TOKENS = """
UPDATE auth_session SET access_token = :access_token, refresh_token = :refresh_token,
    expires_at = :expires_at, refresh_refused = NULL
WHERE user_id = :user_id AND refresh_token IS :old_refresh_token
"""
REFUSED = """
UPDATE auth_session SET refresh_refused = :reason
WHERE user_id = :user_id AND refresh_token IS :old_refresh_token
"""
SIGN_IN = """
INSERT INTO auth_session (id, user_id, email, access_token, refresh_token, expires_at)
VALUES (1, :user_id, :email, :access_token, :refresh_token, :expires_at)
"""

SIGN_IN_AGAIN = "signed out: sign in again"


class SignedOut(Exception):
    """No usable session: a person must sign in (the message says why)."""


class TokenKeeper:
    """Hands out a valid access token for the store's signed-in user."""

    def __init__(
        self, conn: sqlite3.Connection, store_path: Path, client: AuthClient | None, *,
        margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self.conn = conn
        self.client = client
        self.margin_s = margin_s
        self._lock_path = store_path.with_name(store_path.name + ".refresh-lock")
        self._thread_lock = threading.Lock()
        self.refreshes = 0  # how many refreshes this keeper made (status, tests)

    def access_token(self, *, rejected: str | None = None) -> str:
        """A token to send now; *rejected* is one the server just answered 401 to."""
        row = self._read()
        if not self._needs_refresh(row, rejected):
            return str(row["access_token"])
        with self._thread_lock, _flock(self._lock_path):
            row = self._read()  # another thread or process may have refreshed meanwhile
            if not self._needs_refresh(row, rejected):
                return str(row["access_token"])
            return self._refresh(row)

    def _read(self) -> sqlite3.Row:
        row: sqlite3.Row | None = self.conn.execute(READ_SESSION).fetchone()
        if row is None:
            raise SignedOut("no one is signed in")
        if row["refresh_refused"]:
            raise SignedOut(f"{SIGN_IN_AGAIN} ({row['refresh_refused']})")
        if not row["refresh_token"] and not row["access_token"]:
            raise SignedOut(f"{SIGN_IN_AGAIN}: the store holds no session for the sync server "
                            "(`chatsync sign-in --email …`)")
        return row

    def _needs_refresh(self, row: sqlite3.Row, rejected: str | None) -> bool:
        if not row["access_token"]:
            return True
        if rejected is not None and row["access_token"] == rejected:
            return True
        expires_at = row["expires_at"]
        return expires_at is not None and expires_at - time.time() < self.margin_s

    def _refresh(self, row: sqlite3.Row) -> str:
        old = row["refresh_token"]
        if not old:
            raise SignedOut(f"{SIGN_IN_AGAIN}: the access token expired and there is no "
                            "refresh token")
        if self.client is None:
            raise SignedOut(f"{SIGN_IN_AGAIN}: the session expired and remote.auth_url is not "
                            "set, so it cannot be refreshed")
        try:
            tokens = self.client.refresh(old)
        except AuthRefused as exc:
            with write_transaction(self.conn):
                self.conn.execute(REFUSED, {"reason": str(exc), "user_id": row["user_id"],
                                            "old_refresh_token": old})
            raise SignedOut(f"{SIGN_IN_AGAIN} ({exc})") from None
        # Stored before use: the old refresh token is spent from this moment.
        with write_transaction(self.conn):
            self.conn.execute(STORE_TOKENS, {
                "access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
                "expires_at": tokens.expires_at, "user_id": row["user_id"],
                "old_refresh_token": old,
            })
        self.refreshes += 1
        return tokens.access_token


def store_session(conn: sqlite3.Connection, tokens: Tokens) -> None:
    """Sign in: replace whatever session the store holds with *tokens*."""
    with write_transaction(conn):
        conn.execute("DELETE FROM auth_session")
        conn.execute(SIGN_IN, {
            "user_id": tokens.user_id, "email": tokens.email,
            "access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at,
        })


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
