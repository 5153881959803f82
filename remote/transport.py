"""How the engine reaches the remote: one small interface, two ways.

- **direct** (`DirectTransport`): the device holds a DSN and runs the push and pull code
  itself (a single trusted user, the tests, the embedded default);
- **HTTP** (`remote.http_transport.HttpTransport`): the device holds only its user's
  session and `chatsync serve` runs that same code as the token's verified user.

The engine asks a transport for the signed-in user's view (`as_user`), then pushes pages,
reads changes and applies them itself through the inbox; it never knows which way it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import psycopg

from localstore.outbox import Kind
from remote import pull, push
from remote.connect import UserSession
from remote.connect import connect as connect_remote
from remote.errors import is_transient
from remote.pull import Changes
from remote.push import BatchResult, BeforeCommit, BeforeUpsert

# pg_xact_status() of a push's transaction: 'committed', 'aborted', 'in progress', or None.
XACT_STATUS = "SELECT pg_xact_status(%(xid)s::xid8)"


class TransportError(Exception):
    """The remote could not be used; `transient` says whether retrying later may help,
    `unreachable` whether the server was out of reach (the daemon then shows "offline")."""

    def __init__(self, message: str, *, transient: bool, unreachable: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.unreachable = unreachable


class RemoteUser(Protocol):
    """The remote as one signed-in user sees it, for one sync."""

    def ensure_profile(self) -> None: ...

    def push(
        self, kind: Kind, rows: Sequence[dict[str, Any]], *,
        before_commit: BeforeCommit | None = None, before_upsert: BeforeUpsert | None = None,
    ) -> BatchResult: ...

    def push_deletions(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def read_changes(
        self, since: str | None, *, page_size: int, after_message_id: str | None = None,
        byte_order: bool = False,
    ) -> AbstractContextManager[Changes | None]: ...

    def xact_status(self, xid: str) -> str | None: ...


class Transport(Protocol):
    def as_user(self, user_id: str, email: str) -> RemoteUser: ...

    def disconnect(self) -> None: ...


class DirectTransport:
    """PostgreSQL itself, through one connection that is reopened after a failure."""

    def __init__(self, dsn: str, origin: str) -> None:
        self.dsn = dsn
        self.origin = origin
        self.connection: psycopg.Connection | None = None

    def as_user(self, user_id: str, email: str) -> DirectUser:
        if self.connection is None or self.connection.closed:
            self.connection = connect_remote(self.dsn)
        return DirectUser(UserSession(self.connection, user_id, email, origin=self.origin),
                          email)

    def disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class DirectUser:
    def __init__(self, session: UserSession, email: str) -> None:
        self.session = session
        self.email = email

    def ensure_profile(self) -> None:
        push.ensure_profile(self.session, self.email)

    def push(
        self, kind: Kind, rows: Sequence[dict[str, Any]], *,
        before_commit: BeforeCommit | None = None, before_upsert: BeforeUpsert | None = None,
    ) -> BatchResult:
        pusher = push.push_conversations if kind == "conversation" else push.push_messages
        return pusher(self.session, rows, before_commit=before_commit,
                      before_upsert=before_upsert)

    def push_deletions(self, rows: Sequence[dict[str, Any]]) -> None:
        push.push_deletions(self.session, rows)

    def read_changes(
        self, since: str | None, *, page_size: int, after_message_id: str | None = None,
        byte_order: bool = False,
    ) -> AbstractContextManager[Changes | None]:
        return pull.read_changes(self.session, since, page_size=page_size,
                                 after_message_id=after_message_id, byte_order=byte_order)

    def xact_status(self, xid: str) -> str | None:
        try:
            row = self.session.conn.execute(XACT_STATUS, {"xid": xid}).fetchone()
        except psycopg.Error as exc:
            if is_transient(exc):
                raise
            # e.g. "transaction ID is in the future": not the server pushed to. Unknown.
            return None
        return None if row is None else row[0]
