"""Feed retention and re-sync, on the real PostgreSQL and real store files.

The server prunes feed entries older than the retention and records, per user, the largest
xid it pruned; a pull whose cursor had not seen that xid is told to re-sync (direct: the
typed ResyncRequired; HTTP: `"resync": true`), and the device re-pulls its user's rows in
full, keeps its dirty rows and pending deletions, drops the clean rows the remote no longer
has, and ends equal to the remote — also when the re-sync is interrupted halfway."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.engine import store_origin
from daemon.pulling import pull_into
from localstore.inbox import Inbox
from remote import pull
from remote.server.retention import prune
from remote.transport import DirectTransport
from tests.support import ALICE, BOB
from tests.support.auth_standin import AuthStandIn
from tests.support.devices import (
    Device,
    HttpDevice,
    dirty_count,
    local_view,
    remote_view,
    text_times,
)
from tests.support.procs import wait_for
from tests.support.servers import HS_SECRET, ServerProc, batch, conversation, hs_token, message

MONTH_S = 30 * 24 * 3600


def age_feed(dsn: str, interval: str = "40 days") -> None:
    """Make every feed entry look *interval* old (the stamp trigger bypassed)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE chatsync_feed.changes SET changed_at = now() - %s::interval",
                     (interval,))


def profiles(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO public.profiles (id, email) VALUES (%s, 'a@x'), (%s, 'b@x') "
                 "ON CONFLICT DO NOTHING", (ALICE, BOB))


def prune_now(dsn: str, retention_s: float = MONTH_S) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return prune(conn, retention_s)


def test_prune_removes_old_entries_records_the_horizon_and_is_idempotent(
        remote_dsn: str) -> None:
    with psycopg.connect(remote_dsn, autocommit=True) as conn:
        profiles(conn)
        conn.execute("INSERT INTO public.chat_sessions (id, user_id) VALUES ('C1', %s), "
                     "('C2', %s)", (ALICE, BOB))
        conn.execute("INSERT INTO public.chat_messages (id, session_id, role, content) "
                     "VALUES ('M1', 'C1', 'user', 'a'), ('M2', 'C1', 'user', 'b')")
        # Every upsert stamps changed_at, also the UPDATEs of the feed functions.
        assert conn.execute("SELECT count(*) FROM chatsync_feed.changes "
                            "WHERE changed_at > now() - interval '1 minute'").fetchone()[0] == 4
        age_feed(remote_dsn)
        conn.execute("UPDATE public.chat_messages SET content = 'b2' WHERE id = 'M2'")
        fresh = "changed_at > now() - interval '1 minute'"
        kept = conn.execute(f"SELECT id FROM chatsync_feed.changes WHERE {fresh} ORDER BY id"
                            ).fetchall()
        assert ("M2",) in kept and ("M1",) not in kept
        old_max = conn.execute("SELECT max(xid::text::bigint) FROM chatsync_feed.changes "
                               f"WHERE user_id = %s AND NOT ({fresh})", (ALICE,)).fetchone()[0]
        assert prune(conn, MONTH_S, batch=1) == 4 - len(kept)  # in batches of one
        assert prune(conn, MONTH_S) == 0
        left = conn.execute("SELECT id FROM chatsync_feed.changes ORDER BY id").fetchall()
        assert left == kept
        horizon = dict(conn.execute(
            "SELECT user_id::text, xid::text::bigint FROM chatsync_feed.pruned").fetchall())
        assert horizon[ALICE] == old_max and BOB in horizon
        # Another instance pruning holds the lock: this one skips its round.
        with psycopg.connect(remote_dsn) as other:
            other.execute("SELECT pg_advisory_xact_lock(7305118043)")
            assert prune(conn, 0) is None
            other.rollback()
        assert prune(conn, 0) == len(kept)


def test_a_cursor_older_than_the_horizon_is_told_to_resync_a_newer_one_is_not(
        remote_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(remote_dsn, autocommit=True) as conn:
        profiles(conn)
        conn.execute("INSERT INTO public.chat_sessions (id, user_id) VALUES ('C1', %s)",
                     (ALICE,))
    transport = DirectTransport(remote_dsn, "devX")
    try:
        user = transport.as_user(ALICE, "alice@example.com")
        with user.read_changes(None, page_size=10) as changes:
            assert changes is not None
            old_cursor = changes.horizon
        with psycopg.connect(remote_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO public.chat_sessions (id, user_id) VALUES ('C2', %s)",
                         (ALICE,))
        age_feed(remote_dsn)
        assert prune_now(remote_dsn) == 2
        with pytest.raises(pull.ResyncRequired), user.read_changes(old_cursor, page_size=10):
            pass
        with user.read_changes(None, page_size=10) as changes:
            assert changes is not None
            new_cursor = changes.horizon
        with user.read_changes(new_cursor, page_size=10) as changes:
            assert changes is None  # nothing new, and no re-sync
        # Bob's horizon is his own: Alice's pruning does not make him re-sync.
        bob = transport.as_user(BOB, "bob@example.com")
        with bob.read_changes(old_cursor, page_size=10) as changes:
            assert changes is None
    finally:
        transport.disconnect()


@pytest.fixture
def devices(tmp_path: Path, remote_dsn: str) -> Iterator[dict[str, Device]]:
    made = {name: Device(tmp_path / name / "chatsync.db", remote_dsn)
            for name in ("laptop", "desktop")}
    for d in made.values():
        d.store.sign_in(ALICE, "alice@example.com")
    yield made
    for d in made.values():
        d.close()


def _diverge(laptop: Device, desktop: Device, remote_dsn: str) -> dict[str, str]:
    """Both devices in sync, then the remote moves on while the desktop is away and edits
    locally; the feed entries of it all are pruned."""
    c1 = laptop.store.create_conversation("kept", id="C1")
    c2 = laptop.store.create_conversation("goes", id="C2")
    for i in range(1, 10):
        laptop.store.add_message(c1.id, "user", f"m{i}", id=f"M{i}")
    laptop.store.add_message(c2.id, "user", "n1", id="N1")
    laptop.sync()
    desktop.sync()
    assert local_view(desktop.store) == local_view(laptop.store)
    # The remote moves on: deletes, an edit, a new message, a whole conversation gone.
    laptop.store.delete_message("M2")
    laptop.store.update_message("M3", content="m3 edited on the laptop")
    laptop.store.add_message(c1.id, "assistant", "m10", id="M10")
    laptop.store.delete_conversation("C2")
    laptop.sync()
    with psycopg.connect(remote_dsn, autocommit=True) as conn:  # the web app deletes M6
        conn.execute("DELETE FROM public.chat_messages WHERE id = 'M6'")
    # The desktop, offline meanwhile: an edit, a pending deletion, a new message.
    desktop.store.update_message("M4", content="m4 edited on the desktop")
    desktop.store.delete_message("M5")
    desktop.store.add_message(c1.id, "user", "m11 from the desktop", id="M11")
    age_feed(remote_dsn)
    assert prune_now(remote_dsn)
    return {"cursor": str(Inbox(desktop.engine.local).cursor(ALICE))}


def _check_converged(desktop: Device, remote_dsn: str) -> None:
    with text_times(psycopg.connect(remote_dsn, autocommit=True)) as conn:
        remote = remote_view(conn)
        assert local_view(desktop.store) == remote
    messages = remote["messages"]
    assert {"M2", "M5", "M6", "N1"}.isdisjoint(messages)
    assert "C2" not in remote["conversations"]
    assert {"M3", "M4", "M10", "M11"} <= set(messages)
    assert desktop.store.message("M4").content == "m4 edited on the desktop"
    assert desktop.store.message("M3").content == "m3 edited on the laptop"
    assert dirty_count(desktop.store) == 0


def test_direct_resync_keeps_local_edits_drops_what_is_gone_and_converges(
        devices: dict[str, Device], remote_dsn: str) -> None:
    laptop, desktop = devices["laptop"], devices["desktop"]
    old = _diverge(laptop, desktop, remote_dsn)
    desktop.engine.pull_page_size = 3  # several pages, each its own range
    desktop.sync()
    assert Inbox(desktop.engine.local).cursor(ALICE) != old["cursor"]
    _check_converged(desktop, remote_dsn)
    # And the laptop, whose cursor is older than the horizon too, re-syncs as well.
    laptop.sync()
    assert local_view(laptop.store) == local_view(desktop.store)


class Interrupted(Exception):
    pass


class CutAfter:
    """The remote user, with the full pull's messages cut after *pages* pages."""

    def __init__(self, inner: Any, pages: int) -> None:
        self.inner, self.pages = inner, pages

    @contextmanager
    def read_changes(self, since: str | None, **kw: Any) -> Iterator[pull.Changes | None]:
        with self.inner.read_changes(since, **kw) as changes:
            if changes is not None:
                changes.messages = self._cut(changes.messages)
            yield changes

    def _cut(self, pages: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        for n, page in enumerate(pages):
            if n == self.pages:
                raise Interrupted
            yield page
        raise Interrupted  # after the last page, before the end of the re-sync


@pytest.mark.parametrize("pages", [0, 1, 2, 3, 4])
def test_a_resync_interrupted_halfway_goes_on_and_converges(
        devices: dict[str, Device], remote_dsn: str, pages: int) -> None:
    laptop, desktop = devices["laptop"], devices["desktop"]
    old = _diverge(laptop, desktop, remote_dsn)
    inbox = Inbox(desktop.engine.local)
    transport = DirectTransport(remote_dsn, store_origin(desktop.path))
    try:
        remote = CutAfter(transport.as_user(ALICE, "alice@example.com"), pages)
        with pytest.raises(Interrupted):
            pull_into(remote, ALICE, inbox, page_size=3)  # type: ignore[arg-type]
    finally:
        transport.disconnect()
    # Halfway: the old cursor stays (so the re-sync is asked for again), its resume point
    # is recorded, and every local edit is still here.
    assert inbox.cursor(ALICE) == old["cursor"]
    assert inbox.resume_point(ALICE) is not None
    assert desktop.store.message("M4").content == "m4 edited on the desktop"
    assert desktop.store.message("M11").content == "m11 from the desktop"
    assert desktop.store.conn.execute(
        "SELECT count(*) FROM tombstones WHERE id = 'M5'").fetchone()[0] == 1
    desktop.engine.pull_page_size = 3
    desktop.sync()
    assert inbox.resume_point(ALICE) is None
    _check_converged(desktop, remote_dsn)


# --- over HTTP: a real chatsync serve, its scheduled pruning, and a device's re-sync -----

def test_http_server_prunes_on_schedule_and_an_old_cursor_gets_resync(
        tmp_path: Path, remote_dsn: str) -> None:
    server = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET, feed_retention_seconds=2,
                        feed_prune_interval_seconds=1).start()
    token = hs_token(ALICE)
    try:
        r = server.post("/v1/push", batch(conversations=[conversation("C1", ALICE)],
                                          origin="devA"), token)
        assert r.status_code == 200, r.text
        old = server.post("/v1/pull", {"origin": "devB"}, token).json()["cursor"]
        server.post("/v1/push", batch(messages=[message("M1", "C1")], origin="devA"), token)
        with psycopg.connect(remote_dsn, autocommit=True) as conn:
            def pruned() -> bool:
                return conn.execute("SELECT count(*) FROM chatsync_feed.changes"
                                    ).fetchone()[0] == 0
            wait_for(pruned, 15, "the server's scheduled pruning")
        answer = server.post("/v1/pull", {"cursor": old, "origin": "devB"}, token).json()
        assert answer["resync"] is True and answer["changed"] is True
        assert answer["messages"] == [] and answer["cursor"] == old
        # A waiting pull is told at once too.
        t0 = time.monotonic()
        answer = server.post("/v1/pull", {"cursor": old, "origin": "devB",
                                          "wait_seconds": 10}, token).json()
        assert answer["resync"] is True and time.monotonic() - t0 < 2
        # The re-sync's full pull, in the byte order of ids, then a fresh cursor: no resync.
        full = server.post("/v1/pull", {"origin": "devB", "resync": True}, token).json()
        assert full["full"] and [m["id"] for m in full["messages"]] == ["M1"]
        again = server.post("/v1/pull", {"cursor": full["cursor"], "origin": "devB"},
                            token).json()
        assert not again["changed"] and "resync" not in again
    finally:
        server.stop()


def test_http_device_resyncs_through_the_server(
        tmp_path: Path, remote_dsn: str, server: ServerProc, auth: AuthStandIn) -> None:
    laptop = HttpDevice(tmp_path / "laptop" / "chatsync.db", server, auth)
    desktop = HttpDevice(tmp_path / "desktop" / "chatsync.db", server, auth,
                         pull_page_size=3)
    try:
        _diverge(laptop, desktop, remote_dsn)  # type: ignore[arg-type]
        desktop.sync()
        _check_converged(desktop, remote_dsn)  # type: ignore[arg-type]
    finally:
        laptop.close()
        desktop.close()




# --- property: any interleaving of remote and local changes, any page size, any point of
# interruption, in a database whose collation does not order ids by bytes ---------------

ID_ALPHABET = "aAbB-_.z9é"


@pytest.fixture(scope="module")
def icu_dsn(admin_dsn: str) -> Iterator[str]:
    """A database ordering text by en-US rules ('B' < 'a' is false there), unlike SQLite."""
    from psycopg import sql

    from remote.migrate import migrate
    from tests.support import pg

    name = f"chatsync_icu_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu "
                             "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'").format(
                                 sql.Identifier(name)))
    dsn = pg.dsn_for(admin_dsn, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        assert conn.execute("SELECT 'B' < 'a'").fetchone()[0] is False
    yield dsn
    pg.drop_database(admin_dsn, name)


def _user_view(store_conn: Any, remote_conn: psycopg.Connection | None, user: str
               ) -> dict[str, Any]:
    if remote_conn is not None:
        rows = remote_conn.execute(
            "SELECT m.id, m.content FROM chat_messages m JOIN chat_sessions s "
            "ON s.id = m.session_id WHERE s.user_id = %s", (user,)).fetchall()
        convs = remote_conn.execute("SELECT id FROM chat_sessions WHERE user_id = %s",
                                    (user,)).fetchall()
    else:
        rows = store_conn.execute(
            "SELECT m.id, m.content FROM messages m JOIN conversations c "
            "ON c.id = m.conversation_id WHERE c.user_id = ?", (user,)).fetchall()
        convs = store_conn.execute("SELECT id FROM conversations WHERE user_id = ?",
                                   (user,)).fetchall()
    return {"messages": {r[0]: r[1] for r in rows}, "conversations": {r[0] for r in convs}}


@settings(max_examples=60 if os.environ.get("CHATSYNC_LONG") else 10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_resync_converges_for_any_changes_pages_and_interruption(
        icu_dsn: str, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    ids = st.text(ID_ALPHABET, min_size=1, max_size=4)
    first = data.draw(st.lists(ids, min_size=1, max_size=12, unique=True), "first")
    user = str(uuid.uuid4())
    conv, other = f"c-{user[:8]}", f"d-{user[:8]}"
    prefix = user[:4]  # message ids are global: keep each example's apart, same byte order
    mid = {i: f"{prefix}{i}" for i in first}
    with psycopg.connect(icu_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.profiles (id, email) VALUES (%s, 'p@x')", (user,))
        conn.execute("INSERT INTO public.chat_sessions (id, user_id) VALUES (%s, %s), "
                     "(%s, %s)", (conv, user, other, user))
        for i in first:
            conn.execute("INSERT INTO public.chat_messages (id, session_id, role, content) "
                         "VALUES (%s, %s, 'user', 'v1')", (mid[i], conv))
    device = Device(tmp_path_factory.mktemp("dev") / "chatsync.db", icu_dsn)
    try:
        device.store.sign_in(user, "p@x")
        device.sync()
        # The remote moves on while the device is away...
        remote_deleted = data.draw(st.sets(st.sampled_from(first)), "remote_deleted")
        remote_edited = data.draw(st.sets(st.sampled_from(first)), "remote_edited")
        added = data.draw(st.lists(ids.filter(lambda i: i not in mid), max_size=5,
                                   unique=True), "remote_added")
        drop_other = data.draw(st.booleans(), "drop_other")
        # ...and the device edits and deletes locally.
        local_edited = data.draw(st.sets(st.sampled_from(first)), "local_edited")
        local_deleted = data.draw(st.sets(st.sampled_from(first)), "local_deleted")
        with psycopg.connect(icu_dsn, autocommit=True) as conn:
            for i in remote_edited:
                conn.execute("UPDATE public.chat_messages SET content = 'remote' "
                             "WHERE id = %s", (mid[i],))
            for i in remote_deleted:
                conn.execute("DELETE FROM public.chat_messages WHERE id = %s", (mid[i],))
            for i in added:
                conn.execute("INSERT INTO public.chat_messages (id, session_id, role, "
                             "content) VALUES (%s, %s, 'user', 'new')", (prefix + i, conv))
            if drop_other:
                conn.execute("DELETE FROM public.chat_sessions WHERE id = %s", (other,))
            # Always something after the device's cursor, so its pruning forces a re-sync.
            conn.execute("INSERT INTO public.chat_messages (id, session_id, role, content) "
                         "VALUES (%s, %s, 'user', 'marker')", (f"{prefix}~remote", conv))
        for i in local_edited - local_deleted:
            device.store.update_message(mid[i], content="local")
        for i in local_deleted:
            device.store.delete_message(mid[i])
        device.store.add_message(conv, "user", "only here", id=f"{prefix}~local")
        age_feed(icu_dsn)
        assert prune_now(icu_dsn)
        # An interrupted re-sync first, at any page, then the next sync finishes it.
        page_size = data.draw(st.integers(1, 4), "page_size")
        cut = data.draw(st.integers(0, 5), "interrupt_after_pages")
        transport = DirectTransport(icu_dsn, store_origin(device.path))
        inbox = Inbox(device.engine.local)
        try:
            with pytest.raises(Interrupted):
                pull_into(CutAfter(transport.as_user(user, "p@x"), cut),  # type: ignore[arg-type]
                          user, inbox, page_size=page_size)
        finally:
            transport.disconnect()
        device.engine.pull_page_size = page_size
        device.sync()
        with psycopg.connect(icu_dsn, autocommit=True) as conn:
            remote = _user_view(None, conn, user)
        local = _user_view(device.engine.local, None, user)
        assert local == remote
        assert dirty_count(device.store) == 0
        # Local edits reached the remote unless the row was deleted there (deletion wins).
        for i in local_edited - local_deleted - remote_deleted:
            assert remote["messages"][mid[i]] == "local"
        assert not {mid[i] for i in local_deleted} & set(remote["messages"])
        assert f"{prefix}~local" in remote["messages"]
    finally:
        device.close()
