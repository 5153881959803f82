"""What `chatsync status` says: the store's own view, plus the daemon's live view."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.protocol import DaemonState, DaemonStatus, Status
from localstore import Store
from localstore.inbox import Inbox
from localstore.outbox import Outbox
from localstore.timestamps import age_seconds

if TYPE_CHECKING:
    from rich.console import Console


def store_status(store_path: Path, remote_label: str) -> dict[str, Any]:
    """Status as the store alone can tell it (no daemon, no remote)."""
    with Store(store_path) as store:
        session = store.signed_in()
        outbox = Outbox(store.conn)
        pending = outbox.pending(session.user_id) if session else None
        oldest_age = age_seconds(pending.oldest) if pending and pending.oldest else None
        return {
            "store": str(store.path),
            "remote": remote_label,
            "signed_in": session.user_id if session else None,
            "email": session.email if session else None,
            "pending": {
                "conversations": pending.conversations if pending else 0,
                "messages": pending.messages if pending else 0,
                "deletions": pending.deletions if pending else 0,
                "oldest_age_s": oldest_age,
            },
            # dirty messages of a quarantined conversation: not pending, sent along with it
            "waiting_on_quarantine": pending.waiting if pending else 0,
            "anonymous_conversations": outbox.anonymous_conversations(),
            "quarantined": [_printable(q) for q in outbox.quarantined()],
            # rows pulled from the remote that the store cannot hold as they are
            "held": [_printable(h) for h in Inbox(store.conn).held()],
            # conflicts the pull resolved, by resolution (see localstore/inbox.py)
            "conflicts": Inbox(store.conn).conflict_counts(),
        }


def explain(daemon: DaemonStatus | None, pending_total: int) -> str:
    """The daemon's state in one sentence a person can act on."""
    if daemon is None:
        return ("No daemon is running; this is the store's own view. Start one with "
                "`chatsync run`, or sync once with `chatsync sync-now`.")
    view = daemon.service
    last = view.last_sync.report if view.last_sync else None
    retry = view.retry_in_s
    when = f"in {retry:.0f}s" if retry is not None else "on the next trigger"
    if view.state is DaemonState.SYNCING and view.syncing is not None:
        return f"Syncing ({view.syncing.reason}): {view.syncing.sent} rows sent so far."
    if view.state is DaemonState.STOPPING:
        return "Stopping: finishing the batch in flight."
    if view.state in (DaemonState.OFFLINE, DaemonState.BACKING_OFF) and (
            last is not None and last.outcome.transient):
        return (f"The last sync failed for a reason that usually passes by itself "
                f"({last.error}); chatsync retries {when} "
                f"(failure {view.failures} in a row). Edits are kept locally.")
    if view.state is DaemonState.BACKING_OFF:
        return (f"The last sync failed and will not fix itself: "
                f"{last.error if last else None}. Fix that, then run `chatsync sync-now`; "
                f"chatsync also retries on the next trigger after the back-off ({when}).")
    if view.state is DaemonState.SIGNED_OUT and last is not None and last.signed_out:
        return (f"{last.error}. Sign in again (`chatsync sign-in --email …`, or the "
                "app); local edits keep queueing and nothing is dropped.")
    if view.state is DaemonState.SIGNED_OUT:
        return "No one is signed in: nothing is pushed, and local data is kept until a sign-in."
    if pending_total:
        return f"Idle; {pending_total} row(s) wait for the next sync."
    return "Idle and up to date."


def render(status: Status, console: Console) -> None:
    # rich only here: `chatsync status --json` and the daemon's status route never draw.
    from rich.table import Table

    data = status.to_json()
    daemon = data.get("daemon")
    pending = data["pending"]
    total = pending["conversations"] + pending["messages"] + pending["deletions"]
    table = Table(show_header=False, box=None)
    table.add_row("state", status.daemon.state.value if status.daemon else "no daemon running")
    table.add_row("", explain(status.daemon, total))
    table.add_row("store", data["store"])
    table.add_row("remote", data["remote"])
    table.add_row("signed in", data["signed_in"] or "no one")
    table.add_row(
        "pending",
        f"{pending['conversations']} conversations, {pending['messages']} messages, "
        f"{pending['deletions']} deletions",
    )
    if pending["oldest_age_s"] is not None:
        table.add_row("oldest pending", f"{pending['oldest_age_s']:.0f}s ago")
    waiting = data.get("waiting_on_quarantine") or 0
    table.add_row("quarantined", str(len(data["quarantined"])) + (
        f" (+{waiting} messages waiting for their quarantined conversation)" if waiting else ""))
    held = data.get("held") or []
    table.add_row("held (pulled)", f"{len(held)} remote row(s) this store cannot hold"
                  if held else "0")
    if daemon:
        last = daemon.get("last_sync")
        if last:
            table.add_row("last sync", f"{last['finished_at']} ({last['reason']}): "
                          f"{last['summary']}")
        table.add_row("next scheduled", daemon.get("next_scheduled") or "-")
        live = daemon.get("live")
        if live:
            table.add_row("live changes", f"{live['state']} ({live['wakeups']} so far)")
        watching = daemon.get("watching") or {}
        table.add_row("file watching", watching.get("mode", "?") +
                      (f" ({watching['note']})" if watching.get("note") else ""))
        syncs = daemon["syncs"]
        table.add_row("syncs", f"{syncs['total']} since start (pid {daemon['pid']}), "
                      f"{sum(syncs['errors'].values())} failed")
    console.print(table)
    for q in data["quarantined"]:
        console.print(f"  {q['kind']} {q['id']}: {q['reason']}", markup=False)
    for h in held:
        console.print(f"  held {h['kind']} {h['id']}: {h['reason']}", markup=False)


def _printable(row: dict[str, Any]) -> dict[str, Any]:
    # An id that is not UTF-8 (read with lone surrogates) cannot be printed or sent as
    # JSON text: show its undecodable bytes as \xNN escapes.
    return {k: v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            if isinstance(v, str) else v for k, v in row.items()}
