"""Applying what the remote changed: read through the transport, applied by the inbox.

The transport (direct or HTTP, see remote/transport.py) only reads; the engine writes the
store here, so both ways share one conflict policy, one cursor and one resumable first
pull (see remote/pull.py's docstring for the cursor and the resume).

A re-sync: when the remote's change feed was pruned past the store's cursor (the remote
raises ResyncRequired, direct or over HTTP), the user's rows are pulled in full, in the byte
order of message ids and resumable like a first pull, and each page also removes the
store's CLEAN rows of its id range that the remote no longer has. Dirty rows and pending
deletions are kept (the push that follows settles them by the usual policy); the store ends
equal to the remote. The old cursor stays until the re-sync is done, so an interrupted one
is asked for again and goes on from its resume point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from localstore.inbox import Applied, Inbox, Resume
from remote.pull import ResyncRequired
from remote.transport import RemoteUser

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PullResult:
    applied: Applied
    read: int = 0  # remote rows read (echoes of our own pushes included)
    full: bool = False  # a first pull: everything the user has
    resync: bool = False  # a full pull because the feed no longer covered the cursor


def pull_into(
    remote: RemoteUser, user_id: str, inbox: Inbox, *, page_size: int = 5000,
    progress: Callable[[str, int], None] | None = None,
) -> PullResult:
    """Pull what changed since the store's cursor and apply it; then advance the cursor.

    The cursor is written only when something was read, and rows equal to the local ones
    write nothing, so a sync that finds nothing new writes nothing locally (the daemon's
    file watcher is not woken by its own pulls). An old cursor stays a valid one. A first
    pull that was interrupted goes on where it stopped.
    """
    result = PullResult(Applied())
    since = inbox.cursor(user_id)
    resumed = inbox.resume_point(user_id) if since is None else None
    after = resumed[1] if resumed else None
    try:
        return _pull(remote, user_id, inbox, result, since, resumed, after, page_size,
                     progress)
    except ResyncRequired:
        log.warning("the remote's change feed no longer reaches back to this store's last "
                    "pull: re-syncing the account in full (local edits are kept)")
        return resync_into(remote, user_id, inbox, page_size=page_size, progress=progress)


def _pull(
    remote: RemoteUser, user_id: str, inbox: Inbox, result: PullResult, since: str | None,
    resumed: tuple[str, str | None] | None, after: str | None, page_size: int,
    progress: Callable[[str, int], None] | None,
) -> PullResult:
    with remote.read_changes(since, page_size=page_size, after_message_id=after) as changes:
        if changes is None:
            return result
        result.full = changes.full
        # The horizon a full pull ends on is the one it began with.
        horizon = resumed[0] if resumed else changes.horizon
        resume = Resume(user_id, horizon, after) if changes.full else None
        result.applied.add(inbox.apply_conversations(changes.conversations, resume=resume))
        result.read += len(changes.conversations)
        if progress is not None:
            progress("pull-total", changes.message_count)
        for page in changes.messages:
            if changes.full:
                resume = Resume(user_id, horizon, page[-1]["id"])
            result.applied.add(inbox.apply_messages(page, resume=resume))
            result.read += len(page)
            if progress is not None:
                progress("pulled", len(page))
    return _finish(inbox, user_id, horizon, result)


def resync_into(
    remote: RemoteUser, user_id: str, inbox: Inbox, *, page_size: int = 5000,
    progress: Callable[[str, int], None] | None = None,
) -> PullResult:
    """Pull the user's rows in full and make the store's clean rows equal to them.

    Resumable: each page's range and its resume point are applied in one local
    transaction; the cursor is replaced only at the end, by the horizon it began with.
    """
    result = PullResult(Applied(), full=True, resync=True)
    resumed = inbox.resume_point(user_id)
    after = resumed[1] if resumed else None
    with remote.read_changes(None, page_size=page_size, after_message_id=after,
                             byte_order=True) as changes:
        assert changes is not None  # a full read always has an answer
        horizon = resumed[0] if resumed else changes.horizon
        result.applied.add(inbox.resync_conversations(
            user_id, changes.conversations, resume=Resume(user_id, horizon, after)))
        result.read += len(changes.conversations)
        if progress is not None:
            progress("pull-total", changes.message_count)
        for page in changes.messages:
            upto = page[-1]["id"]
            result.applied.add(inbox.resync_messages(
                user_id, page, after=after, upto=upto, resume=Resume(user_id, horizon, upto)))
            after = upto
            result.read += len(page)
            if progress is not None:
                progress("pulled", len(page))
        # Past the last page: whatever clean message remains there is gone remotely.
        result.applied.add(inbox.resync_messages(user_id, [], after=after, upto=None,
                                                 resume=None))
    return _finish(inbox, user_id, horizon, result)


def _finish(inbox: Inbox, user_id: str, horizon: str, result: PullResult) -> PullResult:
    # The cursor moves only once everything read is applied.
    inbox.finish_pull(user_id, horizon)
    if result.applied.held:
        log.warning("%d pulled row(s) cannot be kept in the local store as they are; they are "
                    "held aside (see `chatsync status`) and the rest was applied",
                    result.applied.held)
    return result
