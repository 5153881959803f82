"""Telling transient remote failures (retry later) from permanent ones (a person must act)."""

from __future__ import annotations

import psycopg
from psycopg import errors as pgerr


class UnknownUser(Exception):
    """The signed-in user has no account on the server (its profile cannot be created)."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id} does not exist on the server: sign up in the app first")
        self.user_id = user_id


# Connection trouble, server restarts, timeouts, lock or serialization conflicts.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_CODES = {"55P03"}  # lock_not_available


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, pgerr.InvalidAuthorizationSpecification | pgerr.InvalidPassword
    ):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None:
            # No SQLSTATE: the connection failed before the server answered. A refused
            # connection is transient; a bad password at connect time says so in text.
            return "password authentication failed" not in str(exc) and (
                "no password supplied" not in str(exc)
            )
        return sqlstate.startswith(_TRANSIENT_CLASSES) or sqlstate in _TRANSIENT_CODES
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate or ""
        return sqlstate.startswith(_TRANSIENT_CLASSES) or sqlstate in _TRANSIENT_CODES
    return isinstance(exc, OSError | TimeoutError)


def is_unreachable(exc: BaseException) -> bool:
    """The remote database could not be reached, or the connection to it was lost (what
    `explain` calls "cannot reach"): the daemon shows itself offline."""
    return isinstance(exc, psycopg.OperationalError) and not _refused_credentials(exc)


def _refused_credentials(exc: BaseException) -> bool:
    return isinstance(exc, pgerr.InvalidPassword | pgerr.InvalidAuthorizationSpecification) or (
        isinstance(exc, psycopg.OperationalError) and "password authentication" in str(exc)
    )


def explain(exc: BaseException) -> str:
    """One sentence a person can act on; never includes the DSN or its password."""
    if isinstance(exc, UnknownUser):
        return str(exc)
    if isinstance(exc, pgerr.UndefinedTable):
        return (
            "the remote database lacks the app's tables; run `chatsync migrate` "
            f"({_primary(exc)})"
        )
    if _refused_credentials(exc):
        return "the remote refused chatsync's credentials; check remote.dsn"
    if is_unreachable(exc):
        return f"cannot reach the remote database: {_primary(exc)}"
    if isinstance(exc, psycopg.Error):
        return f"the remote database refused the sync: {_primary(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _primary(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    text = (diag.message_primary if diag is not None else None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
