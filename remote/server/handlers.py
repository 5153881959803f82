"""What /v1/push and /v1/pull do, as the verified user: the direct mode's own code.

Synchronous (psycopg), called in a worker thread by app.py; see db.py for why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from remote import pull, push
from remote.errors import explain, is_transient
from remote.server import metrics
from remote.server.auth import Identity
from remote.server.db import DatabaseDown, user_session
from remote.server.wire import PullRequest, PushRequest, row_dict

log = logging.getLogger(__name__)


class ServerFault(Exception):
    """The database refused in a way a retry will not fix (logged, not shown in detail)."""


@contextmanager
def _database() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        if is_transient(exc):
            raise DatabaseDown(explain(exc)) from exc
        log.error("database error: %s", explain(exc))
        raise ServerFault from exc


def push_batch(pool: ConnectionPool, who: Identity, req: PushRequest) -> dict[str, Any]:
    """Conversations, then messages, then deletions: one transaction each, as direct mode."""
    empty = _kind_result(push.BatchResult())
    answer: dict[str, Any] = {"conversations": empty, "messages": empty}
    if not (req.conversations or req.messages or req.deletions):
        return answer | {"deletions": {"acked": []}}  # nothing to do: no database round trip
    with _database(), user_session(pool, who, req.origin) as session:
        push.ensure_profile(session, who.email)
        for kind, rows, pusher in (
            ("conversation", req.conversations, push.push_conversations),
            ("message", req.messages, push.push_messages),
        ):
            result = pusher(session, [row_dict(r) for r in rows]) if rows else push.BatchResult()
            answer[kind + "s"] = _kind_result(result)
            metrics.ROWS_PUSHED.labels(kind).inc(len(rows))
            metrics.ROWS_WRITTEN.labels(kind).inc(result.written)
            metrics.REFUSALS.labels(kind).inc(len(result.refused))
        deletions = [d.model_dump() for d in req.deletions]
        if deletions:
            # Under row-level security another user's ids match nothing: acknowledged, as in
            # direct mode, and nothing of theirs is touched.
            push.push_deletions(session, deletions)
            metrics.ROWS_PUSHED.labels("deletion").inc(len(deletions))
    answer["deletions"] = {"acked": deletions}
    return answer


def _kind_result(result: push.BatchResult) -> dict[str, Any]:
    return {
        "acked": [{"id": i, "rev": r} for i, r in result.acked],
        "written": result.written,
        "refused": [{"id": r.id, "rev": r.rev, "reason": r.reason} for r in result.refused],
        "gone": list(result.gone),
    }


def unchanged(req: PullRequest) -> dict[str, Any]:
    """The answer to a pull that found nothing new: the cursor stays."""
    return {"changed": False, "full": False, "cursor": req.cursor, "more": False,
            "message_count": 0, "conversations": [], "messages": []}


def pull_window(pool: ConnectionPool, who: Identity, req: PullRequest, *,
                news_only: bool = False) -> dict[str, Any]:
    """What changed after the cursor, in one snapshot.

    With *news_only* (a live pull's check), the device's own entries alone are no change.
    A cursor older than the feed's retention gets `resync: true` and no rows.

    A full pull (no cursor) is paged by message id: each response carries at most
    `page_size` messages and `more`; the device asks again with `after_message_id`, which is
    the direct mode's resumable first pull (the device keeps the first page's cursor). An
    incremental window is answered whole.
    """
    try:
        return _pull_window(pool, who, req, news_only)
    except pull.ResyncRequired:
        metrics.RESYNCS.inc()
        return unchanged(req) | {"changed": True, "resync": True}


def _pull_window(pool: ConnectionPool, who: Identity, req: PullRequest,
                 news_only: bool) -> dict[str, Any]:
    with _database(), user_session(pool, who, req.origin) as session, \
            pull.read_changes(session, req.cursor, page_size=req.page_size,
                              after_message_id=req.after_message_id,
                              news_only=news_only, byte_order=req.resync) as changes:
        if changes is None:
            return unchanged(req)
        conversations = [] if req.messages_only else changes.conversations
        if changes.full:
            messages = next(changes.messages, [])
            more = len(messages) == req.page_size
        else:
            messages = [row for page in changes.messages for row in page]
            more = False
        answer = {"changed": True, "full": changes.full, "cursor": changes.horizon,
                  "more": more, "message_count": changes.message_count,
                  "conversations": conversations, "messages": messages}
    metrics.ROWS_PULLED.labels("conversation").inc(len(conversations))
    metrics.ROWS_PULLED.labels("message").inc(len(messages))
    return answer
