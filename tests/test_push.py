"""Pushing to a real PostgreSQL: only changed rows, each counted once, refusals quarantined."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from daemon.engine import SyncEngine
from daemon.report import Outcome
from localstore import Store
from localstore.outbox import Outbox
from remote.connect import UserSession
from remote.connect import connect as connect_remote
from remote.push import push_conversations
from tests.support import ALICE, BOB
from tests.support.remote_facts import audited_truth, remote_rows, usage, write_counts
from tests.support.stores import fill


@pytest.fixture
def engine(store_path: Path, remote_dsn: str) -> Iterator[SyncEngine]:
    e = SyncEngine(store_path, remote_dsn, batch_size=500)
    yield e
    e.close()


def test_second_sync_sends_nothing_writes_nothing_counts_nothing(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE, "alice@example.com")
    fill(store, conversations=20, per_conversation=10)

    first = engine.sync()
    engine.disconnect()
    assert first.ok, first.error
    assert (first.conversations.sent, first.messages.sent) == (20, 200)
    assert (first.conversations.written, first.messages.written) == (20, 200)
    assert usage(remote) == audited_truth(remote)

    counts, figures = write_counts(remote), usage(remote)
    second = engine.sync()
    engine.disconnect()
    assert second.ok and second.sent == 0 and second.outcome is Outcome.NOTHING_TO_SEND
    assert write_counts(remote) == counts
    assert usage(remote) == figures


def test_resending_identical_rows_writes_and_counts_nothing(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    fill(store, conversations=5, per_conversation=20)
    assert engine.sync().ok
    engine.disconnect()
    counts, figures = write_counts(remote), usage(remote)

    # Forget every acknowledgement, as if each mark had been lost in a crash.
    store.conn.execute("UPDATE messages SET synced_rev = 0")
    store.conn.execute("UPDATE conversations SET synced_rev = 0")
    again = engine.sync()
    engine.disconnect()
    assert (again.conversations.sent, again.messages.sent) == (5, 100)
    assert (again.conversations.written, again.messages.written) == (0, 0)
    assert write_counts(remote) == counts
    assert usage(remote) == figures
    assert Outbox(store.conn).pending(ALICE).total == 0


def test_one_edit_among_thousands_sends_and_writes_exactly_that_row(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    fill(store, conversations=30, per_conversation=100)
    assert engine.sync().messages.sent == 3000
    engine.disconnect()
    before = write_counts(remote)

    store.update_message("msg_7_42", content="an edited message")
    report = engine.sync()
    engine.disconnect()
    assert (report.conversations.sent, report.messages.sent) == (0, 1)
    assert report.messages.written == 1
    after = write_counts(remote)
    assert after["chat_messages"] - before["chat_messages"] == 1
    # an edit deep in the history changes no usage figure; its session is bumped once
    # (updated_at, last_activity), as the app's trigger does for every message write
    assert after["chat_sessions"] - before["chat_sessions"] == 1
    assert after["user_usage_daily"] == before["user_usage_daily"]
    row = remote.execute("SELECT content FROM chat_messages WHERE id = 'msg_7_42'").fetchone()
    assert row == ("an edited message",)


def test_token_update_counts_only_the_difference_on_the_message_day(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("streaming")
    msg = store.add_message(conv.id, "assistant", "", model="m1",
                            timestamp="2026-01-15T23:59:59.000Z")  # streaming: no tokens yet
    assert engine.sync().ok
    store.update_message(msg.id, content="done", input_tokens=5, output_tokens=7, total_tokens=12)
    assert engine.sync().ok
    store.update_message(msg.id, content="done, edited")  # content only: counts nothing
    assert engine.sync().ok
    day = remote.execute(
        "SELECT usage_date::text, messages_received, input_tokens, output_tokens, total_tokens, "
        "models_used FROM user_usage_daily WHERE user_id = %s AND messages_received > 0",
        (ALICE,),
    ).fetchall()
    assert day == [("2026-01-15", 1, 5, 7, 12, {"m1": 1})]
    assert usage(remote) == audited_truth(remote)


def test_crash_between_remote_commit_and_local_mark_loses_and_doubles_nothing(
    store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    with Store(store_path) as store:
        store.sign_in(ALICE)
        fill(store, conversations=4, per_conversation=50)

    class Crash(BaseException):
        """As a kill: nothing in the engine catches it, nothing after it runs."""

    def crash_after_second_commit(phase: str, kind: str) -> None:
        if phase == "committed" and kind == "message":
            crash_after_second_commit.commits += 1  # type: ignore[attr-defined]
            if crash_after_second_commit.commits == 2:  # type: ignore[attr-defined]
                raise Crash

    crash_after_second_commit.commits = 0  # type: ignore[attr-defined]
    crashing = SyncEngine(store_path, remote_dsn, batch_size=50,
                          on_phase=crash_after_second_commit)
    with pytest.raises(Crash):
        crashing.sync()
    crashing.close()
    on_remote = remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
    assert on_remote == 100  # two batches committed, the second never marked

    fresh = SyncEngine(store_path, remote_dsn, batch_size=50)
    report = fresh.sync()
    fresh.close()
    # the unmarked batch is known committed (its remote transaction's status) and marked
    # without being sent again; the rest is new
    assert report.messages.sent == 100 and report.messages.written == 100
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 200
    assert usage(remote) == audited_truth(remote)


def test_edit_landing_during_the_push_stays_dirty_and_goes_next_time(
    store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    with Store(store_path) as store:
        store.sign_in(ALICE)
        conv = store.create_conversation("race")
        msg = store.add_message(conv.id, "user", "version 1")

    def edit_while_in_flight(phase: str, kind: str) -> None:
        if phase == "sent" and kind == "message":
            other = sqlite3.connect(store_path, isolation_level=None)
            other.execute("UPDATE messages SET content = 'version 2' WHERE id = ?", (msg.id,))
            other.close()

    e = SyncEngine(store_path, remote_dsn, on_phase=edit_while_in_flight)
    assert e.sync().ok
    e.close()
    content = "SELECT content FROM chat_messages WHERE id = %s"
    assert remote.execute(content, (msg.id,)).fetchone() == ("version 1",)
    with Store(store_path) as store:
        assert store.message(msg.id).dirty

    e = SyncEngine(store_path, remote_dsn)
    assert e.sync().messages.sent == 1
    e.close()
    assert remote.execute(content, (msg.id,)).fetchone() == ("version 2",)


def test_plain_sql_deletes_reach_the_remote(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    convs = fill(store, conversations=3, per_conversation=4)
    assert engine.sync().ok
    c = sqlite3.connect(store.path, isolation_level=None)
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("DELETE FROM messages WHERE id = 'msg_0_1'")
    c.execute("DELETE FROM conversations WHERE id = ?", (convs[2],))
    c.close()
    report = engine.sync()
    assert report.deletions.sent == 2
    ids = {r["id"] for r in remote_rows(remote, "chat_messages")}
    assert "msg_0_1" not in ids and len(ids) == 12 - 1 - 4
    assert convs[2] not in {r["id"] for r in remote_rows(remote, "chat_sessions")}
    assert store.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 0
    assert engine.sync().sent == 0


def test_conversation_id_owned_by_another_user_is_refused_and_quarantined(
    tmp_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    with Store(tmp_path / "bob.db") as bob:
        bob.sign_in(BOB)
        bob.create_conversation("bob's secret", id="conv_shared")
        bob.add_message("conv_shared", "user", "bob's words", id="msg_bob")
    e = SyncEngine(tmp_path / "bob.db", remote_dsn)
    assert e.sync().ok
    e.close()

    with Store(tmp_path / "alice.db") as alice:
        alice.sign_in(ALICE)
        alice.create_conversation("alice's take-over", id="conv_shared")
        alice.add_message("conv_shared", "user", "overwrite", id="msg_alice_1")
        mine = alice.create_conversation("alice's own")
        alice.add_message(mine.id, "user", "hello")
    e = SyncEngine(tmp_path / "alice.db", remote_dsn)
    report = e.sync()
    e.close()

    assert report.ok and report.conversations.quarantined == 1
    assert report.conversations.written == 1 and report.messages.written == 1
    with Store(tmp_path / "alice.db") as alice:
        (q,) = Outbox(alice.conn).quarantined()
        assert q["id"] == "conv_shared" and "row-level security" in q["reason"]
        # its message waits with it, still pending, never sent
        assert alice.message("msg_alice_1").dirty
    row = remote.execute(
        "SELECT user_id::text, title FROM chat_sessions WHERE id = 'conv_shared'").fetchone()
    assert row == (BOB, "bob's secret")
    assert remote.execute("SELECT count(*) FROM chat_messages WHERE id = 'msg_alice_1'"
                          ).fetchone() == (0,)
    assert remote.execute("SELECT content FROM chat_messages WHERE id = 'msg_bob'"
                          ).fetchone() == ("bob's words",)


def test_rows_claiming_another_user_are_never_sent_and_rls_refuses_them(
    store: Store, engine: SyncEngine, remote: psycopg.Connection, remote_dsn: str
) -> None:
    store.sign_in(ALICE)
    c = sqlite3.connect(store.path, isolation_level=None)
    c.execute("INSERT INTO conversations (id, user_id, title) VALUES ('conv_forged', ?, 'x')",
              (BOB,))
    c.close()
    store.create_conversation("mine")
    report = engine.sync()
    assert report.conversations.sent == 1
    assert remote.execute("SELECT count(*) FROM chat_sessions WHERE user_id = %s",
                          (BOB,)).fetchone() == (0,)

    # Even a crafted push that skips the local filter is refused by the database itself.
    with connect_remote(remote_dsn) as conn:
        session = UserSession(conn, ALICE)
        forged = {"id": "conv_forged", "user_id": BOB, "title": "x", "rev": 1,
                  "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                  "is_active": 1, "was_synced": 0}
        result = push_conversations(session, [forged])
    assert [r.id for r in result.refused] == ["conv_forged"]
    assert "row-level security" in result.refused[0].reason
    assert remote.execute("SELECT count(*) FROM chat_sessions WHERE id = 'conv_forged'"
                          ).fetchone() == (0,)


def test_values_postgres_refuses_are_quarantined_and_the_rest_syncs(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("mixed")
    for i in range(20):
        store.add_message(conv.id, "user", f"fine {i}", id=f"msg_ok_{i}")
    c = sqlite3.connect(store.path, isolation_level=None)
    c.execute("INSERT INTO messages (id, conversation_id, role, content) "
              "VALUES ('msg_nul', ?, 'user', 'a' || char(0) || 'b')", (conv.id,))
    c.execute("INSERT INTO messages (id, conversation_id, role, content, timestamp) "
              "VALUES ('msg_year0', ?, 'user', 'x', '0000-01-01T00:00:00Z')", (conv.id,))
    report = engine.sync()
    assert report.ok
    quarantined = {q["id"]: q["reason"] for q in Outbox(store.conn).quarantined()}
    assert set(quarantined) == {"msg_nul", "msg_year0"}
    assert "NUL" in quarantined["msg_nul"]
    assert "out of range" in quarantined["msg_year0"]
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 20

    # a quarantined row is retried once it changes, and then syncs
    c.execute("UPDATE messages SET content = 'ab' WHERE id = 'msg_nul'")
    c.close()
    again = engine.sync()
    assert again.messages.sent == 1 and again.messages.written == 1
    assert "msg_nul" not in {q["id"] for q in Outbox(store.conn).quarantined()}
    assert engine.sync().sent == 0


def test_signed_out_pushes_nothing_and_sign_in_claims_anonymous_work(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    conv = store.create_conversation("offline thoughts")
    store.add_message(conv.id, "user", "written before signing in")
    report = engine.sync()
    assert report.outcome is Outcome.NOT_SIGNED_IN and report.sent == 0
    assert remote.execute("SELECT count(*) FROM chat_sessions").fetchone() == (0,)

    store.sign_in(ALICE)
    report = engine.sync()
    assert report.claimed == 1 and report.messages.sent == 1
    assert remote.execute("SELECT user_id::text FROM chat_sessions").fetchall() == [(ALICE,)]

    store.sign_out()
    store.create_conversation("after sign-out")
    assert engine.sync().outcome is Outcome.NOT_SIGNED_IN
    assert remote.execute("SELECT count(*) FROM chat_sessions").fetchone() == (1,)


def test_unreachable_remote_is_a_transient_error_and_loses_nothing(
    store: Store, store_path: Path
) -> None:
    store.sign_in(ALICE)
    store.create_conversation("waiting")
    e = SyncEngine(store_path, "host=127.0.0.1 port=1 user=postgres connect_timeout=2")
    report = e.sync()
    e.close()
    assert report.outcome is Outcome.UNREACHABLE and report.transient is True
    assert "cannot reach" in (report.error or "")
    assert Outbox(store.conn).pending(ALICE).conversations == 1


def test_timestamps_without_a_zone_are_utc_whatever_the_server_zone(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    db = remote.execute("SELECT current_database()").fetchone()[0]
    remote.execute(f'ALTER DATABASE "{db}" SET timezone = \'America/New_York\'')
    store.sign_in(ALICE)
    conv = store.create_conversation("zones")
    store.add_message(conv.id, "user", "late", id="msg_naive", timestamp="2026-01-15 23:30:00")
    assert engine.sync().ok
    remote.execute("SET timezone = 'UTC'")
    row = remote.execute(
        "SELECT message_timestamp::text FROM chat_messages WHERE id = 'msg_naive'").fetchone()
    assert row == ("2026-01-15 23:30:00+00",)
    day = remote.execute("SELECT usage_date::text FROM user_usage_daily WHERE messages_sent = 1"
                         ).fetchone()
    assert day == ("2026-01-15",)


def test_a_user_the_server_does_not_know_is_a_permanent_error_in_a_sentence(
    store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    # As on the app's real schema: profiles.id references auth.users, and the app's sign-up
    # creates both; chatsync must not (and cannot) create the user.
    remote.execute("CREATE SCHEMA IF NOT EXISTS auth")
    remote.execute("CREATE TABLE auth.users (id uuid PRIMARY KEY)")
    remote.execute("ALTER TABLE public.profiles ADD CONSTRAINT profiles_id_fkey "
                   "FOREIGN KEY (id) REFERENCES auth.users (id)")
    store.sign_in(ALICE, "alice@example.com")
    store.create_conversation("waiting for sign-up")

    report = engine.sync()
    assert report.error == (f"user {ALICE} does not exist on the server: sign up in the app "
                            "first")
    assert report.outcome is Outcome.PERMANENT_FAILURE and report.transient is False
    assert remote.execute("SELECT count(*) FROM chat_sessions").fetchone()[0] == 0

    # The user signs up in the app: its trigger would create the profile; here the insert
    # succeeds now that the user exists, and the waiting conversation goes.
    remote.execute("INSERT INTO auth.users (id) VALUES (%s)", (ALICE,))
    report = engine.sync()
    assert report.ok, report.error
    assert report.conversations.sent == 1


def test_token_counts_the_analytics_cannot_count_are_quarantined_naming_the_field(
    store_path: Path, store: Store, engine: SyncEngine, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("tokens", created_at="2026-03-01T10:00:00.000Z")
    fine = store.add_message(conv.id, "assistant", "fine", total_tokens=30, input_tokens=10,
                             output_tokens=20)
    huge = store.add_message(conv.id, "assistant", "huge", total_tokens=200_000_000)
    # A client with the store's checks bypassed writes a negative count.
    other = sqlite3.connect(store_path, isolation_level=None)
    other.execute("PRAGMA ignore_check_constraints = ON")
    other.execute("INSERT INTO messages (id, conversation_id, role, content, input_tokens, "
                  "total_tokens) VALUES ('msg_negative', ?, 'user', 'minus', -1000000, 5)",
                  (conv.id,))
    other.close()

    report = engine.sync()
    assert report.ok, report.error
    assert report.messages.quarantined == 2
    reasons = {q["id"]: q["reason"] for q in Outbox(store.conn).quarantined()}
    assert set(reasons) == {"msg_negative", huge.id}
    assert reasons["msg_negative"].startswith("input_tokens is -1000000")
    assert reasons[huge.id].startswith("total_tokens is 200000000")
    on_remote = {r[0] for r in remote.execute("SELECT id FROM chat_messages")}
    assert on_remote == {fine.id}
    # Nothing negative or inflated reached the usage figures.
    assert usage(remote) == audited_truth(remote)
    assert remote.execute("SELECT min(input_tokens) >= 0, max(total_tokens) "
                          "FROM user_usage_daily").fetchone() == (True, 30)
