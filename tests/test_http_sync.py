"""Devices syncing through a real `chatsync serve` with real tokens: no database credential
on the device. The same promises as direct mode — exact push, usage equal to the truth,
deletes both ways, echo skip, a paged first pull — plus the session: a 401 refreshes once,
a refusal for good says "signed out: sign in again" and keeps every edit, and a server
that is down then back loses nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from daemon.report import Outcome
from daemon.tokens import store_session
from remote.auth_client import AuthClient
from tests.support.auth_standin import AuthStandIn
from tests.support.devices import PASSWORD, HttpDevice, local_view, remote_view
from tests.support.remote_facts import audited_truth, usage, write_counts
from tests.support.servers import ServerProc


@pytest.fixture
def devices(tmp_path: Path, server: ServerProc, auth: AuthStandIn
            ) -> Iterator[Callable[..., HttpDevice]]:
    made: list[HttpDevice] = []

    def make(name: str, email: str = "alice@example.com", **kw: object) -> HttpDevice:
        d = HttpDevice(tmp_path / name / "chatsync.db", server, auth, email, **kw)  # type: ignore[arg-type]
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_exact_push_pull_and_deletes_through_the_server(
    devices: Callable[..., HttpDevice], remote: psycopg.Connection
) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    conv = laptop.store.create_conversation("trip")
    q = laptop.store.add_message(conv.id, "user", "where?", input_tokens=12, total_tokens=12)
    laptop.store.add_message(conv.id, "assistant", "Lisbon", model="gpt-4o",
                             output_tokens=30, total_tokens=30)
    first = laptop.sync()
    assert (first.conversations.sent, first.messages.sent) == (1, 2)

    before = write_counts(remote)
    again = laptop.sync()
    assert again.sent == 0 and again.pulled == 0  # nothing to send; its own echo skipped
    assert write_counts(remote) == before

    desktop.sync()
    assert desktop.store.message(q.id).content == "where?"
    desktop.store.update_message(q.id, content="where to?")
    desktop.sync()
    laptop.sync()
    assert laptop.store.message(q.id).content == "where to?"
    laptop.store.delete_conversation(conv.id)
    laptop.sync()
    desktop.sync()
    assert desktop.store.conversations() == []
    assert local_view(laptop.store) == local_view(desktop.store) == remote_view(remote)
    assert usage(remote) == audited_truth(remote)


def test_a_first_pull_is_paged_and_complete(
    devices: Callable[..., HttpDevice], remote: psycopg.Connection
) -> None:
    laptop = devices("laptop")
    conv = laptop.store.create_conversation("long")
    for i in range(1200):
        laptop.store.add_message(conv.id, "user", f"m{i}")
    laptop.sync()
    desktop = devices("desktop", pull_page_size=500)
    seen: list[int] = []
    desktop.engine.progress = lambda kind, n: seen.append(n) if kind == "pulled" else None
    report = desktop.sync()
    assert report.pulled == 1201
    assert seen == [500, 500, 200]  # three requests, each page applied as it came
    assert local_view(desktop.store) == remote_view(remote)


def test_users_never_see_each_other(devices: Callable[..., HttpDevice],
                                    remote: psycopg.Connection) -> None:
    alice, bob = devices("alice"), devices("bob", "bob@example.com")
    alice.store.add_message(alice.store.create_conversation("a").id, "user", "mine")
    alice.sync()
    bob.sync()
    assert bob.store.conversations() == []


def test_a_rejected_token_is_refreshed_once_and_the_sync_goes_on(
    devices: Callable[..., HttpDevice], auth: AuthStandIn
) -> None:
    laptop = devices("laptop")
    laptop.store.add_message(laptop.store.create_conversation("c").id, "user", "hi")
    with laptop.store.transaction() as conn:  # a token the server will not accept
        conn.execute("UPDATE auth_session SET access_token = 'not-a-jwt'")
    report = laptop.sync()
    assert report.messages.sent == 1
    assert auth.refresh_calls == 1 and auth.reuse_detected == 0


def test_a_refresh_during_a_push_is_stored_while_the_engine_marks_a_batch(
    devices: Callable[..., HttpDevice], auth: AuthStandIn
) -> None:
    # The engine marks batch k in a thread (a write transaction on its store connection)
    # while batch k+1 is pushed, and that push may refresh the session. The refresh spends
    # the old refresh token at the auth server, so the new one must be stored whatever the
    # marking does: it is written on the transport's own connection, after the marking's.
    laptop = devices("laptop")
    keeper = laptop.keepers[0]
    old = laptop.store.conn.execute("SELECT access_token, refresh_token FROM auth_session"
                                    ).fetchone()
    laptop.engine.local.execute("BEGIN IMMEDIATE")  # the marking thread, mid-transaction
    laptop.engine.local.execute("UPDATE messages SET content = content")
    refreshed: list[str] = []
    refresher = threading.Thread(
        target=lambda: refreshed.append(keeper.access_token(rejected=old[0])))
    refresher.start()
    time.sleep(0.3)
    assert refresher.is_alive() and not refreshed  # it waits for the store's write lock
    laptop.engine.local.execute("ROLLBACK")  # a marking that failed and rolled back
    refresher.join(10)
    assert refreshed and auth.refresh_calls == 1
    with sqlite3.connect(laptop.path) as fresh:
        stored = fresh.execute("SELECT access_token, refresh_token FROM auth_session"
                               ).fetchone()
    assert stored[0] == refreshed[0] and stored[1] != old[1]  # the rotated token is kept
    laptop.store.add_message(laptop.store.create_conversation("c").id, "user", "after")
    assert laptop.sync().messages.sent == 1  # the kept refresh token still works
    assert auth.refresh_calls == 1 and auth.reuse_detected == 0


def test_refresh_refused_says_sign_in_again_and_keeps_every_edit(
    devices: Callable[..., HttpDevice], auth: AuthStandIn, remote: psycopg.Connection
) -> None:
    laptop = devices("laptop")
    conv = laptop.store.create_conversation("c")
    laptop.store.add_message(conv.id, "user", "written while signed out")
    with laptop.store.transaction() as conn:  # expired, and the session revoked
        conn.execute("UPDATE auth_session SET expires_at = ?", (int(time.time()) - 10,))
    auth.revoke_all()
    report = laptop.engine.sync()
    assert report.outcome is Outcome.SIGNED_OUT
    assert not report.ok and report.signed_out and not report.transient
    assert "signed out: sign in again" in report.error
    assert laptop.store.conn.execute("SELECT count(*) FROM messages WHERE dirty").fetchone()[0]
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 0
    # Signing in again: the queued edits go.
    store_session(laptop.store.conn,
                  AuthClient(auth.url, "anon").sign_in_with_password("alice@example.com",
                                                                     PASSWORD))
    assert laptop.sync().messages.sent == 1


def test_server_down_then_back_loses_nothing(
    devices: Callable[..., HttpDevice], server: ServerProc, remote: psycopg.Connection
) -> None:
    laptop = devices("laptop")
    conv = laptop.store.create_conversation("c")
    laptop.store.add_message(conv.id, "user", "one")
    server.stop()
    report = laptop.engine.sync()
    assert report.outcome is Outcome.UNREACHABLE and report.transient
    assert "cannot reach the sync server" in report.error
    laptop.store.add_message(conv.id, "user", "two")
    server.start()
    laptop.sync()
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 2
    assert usage(remote) == audited_truth(remote)


def test_conflicting_edits_and_quarantine_through_the_server(
    devices: Callable[..., HttpDevice], remote: psycopg.Connection
) -> None:
    laptop, desktop = devices("laptop"), devices("desktop")
    conv = laptop.store.create_conversation("shared")
    m = laptop.store.add_message(conv.id, "user", "v0")
    laptop.sync()
    desktop.sync()
    laptop.store.update_message(m.id, content="laptop's")
    desktop.store.update_message(m.id, content="desktop's")
    laptop.sync()
    report = desktop.sync()  # both edited: the one that reaches the server last wins
    assert report.conflicts == 1
    laptop.sync()
    assert laptop.store.message(m.id).content == desktop.store.message(m.id).content \
        == "desktop's"
    # A row the analytics could not count is quarantined, and the rest goes.
    raw = sqlite3.connect(desktop.path)
    raw.execute("PRAGMA ignore_check_constraints = ON")
    raw.execute("INSERT INTO messages (id, conversation_id, role, content, input_tokens) "
                "VALUES ('msg-bad', ?, 'user', 'x', -5)", (conv.id,))
    raw.commit()
    raw.close()
    desktop.store.add_message(conv.id, "user", "fine")
    report = desktop.sync()
    assert report.messages.quarantined == 1
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 2
    assert usage(remote) == audited_truth(remote)
