"""Connections to the app's PostgreSQL, safe behind a transaction-mode pooler."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.abc import Params, QueryNoTemplate
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from remote.dsn import InvalidDsn

HAS_AUTHENTICATED_ROLE = "SELECT to_regrole('authenticated') IS NOT NULL"
# The store's timestamps are UTC; one without a zone must not be read in the server's zone.
# chatsync.origin marks the change-feed entries this engine writes (see 0004_change_feed).
SET_CLAIMS = """
SELECT set_config('request.jwt.claims', %(claims)s, true),
       set_config('TimeZone', 'UTC', true),
       set_config('chatsync.origin', %(origin)s, true)
"""
SET_ROLE_AUTHENTICATED = "SET LOCAL ROLE authenticated"


def scalar(
    conn: psycopg.Connection[Any], query: QueryNoTemplate, params: Params | None = None
) -> Any:
    """The first column of the row *query* returns; a query that returns none is a bug."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError("the query returned no row")
    return row[0]

CONNECT_TIMEOUT_S = 10


def connect(dsn: str, *, application_name: str = "chatsync") -> psycopg.Connection:
    """A connection with no server-side prepared statements and no session state.

    PgBouncer and Supabase's pooler in transaction mode hand each transaction to any server
    connection, so everything chatsync sets is transaction-local (`SET LOCAL`, `set_config(…,
    true)`) and prepared statements are off.
    """
    return psycopg.connect(conninfo(dsn, application_name), autocommit=True,
                           prepare_threshold=None)


def conninfo(dsn: str, application_name: str, **defaults: str | int) -> str:
    """*dsn* as libpq reads it, with chatsync's connect timeout, *application_name* and
    *defaults* wherever the DSN does not set them. A malformed DSN raises InvalidDsn."""
    params = parse_dsn(dsn)
    for key, value in {"connect_timeout": CONNECT_TIMEOUT_S,
                       "application_name": application_name, **defaults}.items():
        params.setdefault(key, value)
    return make_conninfo("", **params)


def parse_dsn(dsn: str) -> dict[str, str | int | None]:
    """libpq's reading of *dsn*; a malformed one raises InvalidDsn, which never quotes it."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq's message quotes the text it could not read, which may be the password.
        raise InvalidDsn(dsn) from None


class UserSession:
    """Runs transactions as one signed-in user, so row-level security applies."""

    def __init__(
        self, conn: psycopg.Connection, user_id: str, email: str = "", *, origin: str = ""
    ) -> None:
        self.conn = conn
        self.user_id = user_id
        # Who writes, for the change feed: one engine's id, never shared by two engines.
        self.origin = origin or secrets.token_hex(8)
        self.claims = json.dumps({"sub": user_id, "role": "authenticated", "email": email})
        self._use_role = bool(scalar(conn, HAS_AUTHENTICATED_ROLE))

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.conn.transaction():
            if self._use_role:
                self.conn.execute(SET_ROLE_AUTHENTICATED)
            self.conn.execute(SET_CLAIMS, {"claims": self.claims, "origin": self.origin})
            yield self.conn
