"""The corrected analytics on the remote (issue 9, items 4, 8, 9).

Rows are written the way the web app's server writes them (plain SQL), and by a device
through the engine. Compared on the app's original schema (its own triggers, after a plain
`chatsync migrate`) and after `--corrected-analytics`, and on chatsync's full schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from daemon.engine import SyncEngine
from localstore import Store
from remote.migrate import migrate
from tests.support import ALICE
from tests.support.remote_facts import audited_truth, usage

INT_MAX = 2_147_483_647
SIGN_UP = "INSERT INTO auth.users (id, email) VALUES (%s, 'alice@example.com')"
PROFILE = "INSERT INTO public.profiles (id, email) VALUES (%s, 'alice@example.com')"
NEW_SESSION = "INSERT INTO chat_sessions (id, user_id, title) VALUES (%s, %s, 'web')"
NEW_MESSAGE = """
INSERT INTO chat_messages (id, session_id, role, content, model, input_tokens,
                           output_tokens, total_tokens, elapsed_time, message_timestamp)
VALUES (%(id)s, %(session)s, %(role)s, 'text', 'web-model', %(input)s, %(output)s,
        %(total)s, %(elapsed)s, coalesce(%(at)s::timestamptz, now()))
"""
SESSION_TIMES = "SELECT updated_at, last_activity FROM chat_sessions WHERE id = %s"
DAILY = """
SELECT coalesce(sum(messages_sent + messages_received), 0), coalesce(sum(input_tokens), 0),
       coalesce(sum(output_tokens), 0), coalesce(sum(total_tokens), 0),
       coalesce(sum(active_minutes), 0), coalesce(sum(sessions_created), 0)
FROM user_usage_daily WHERE user_id = %s
"""


def web_message(conn: psycopg.Connection, msg_id: str, session: str, *, role: str = "assistant",
                input: int = 0, output: int = 0, total: int | None = None, elapsed: int = 0,
                at: str | None = None) -> None:
    """The web app's server inserting a message."""
    conn.execute(NEW_MESSAGE, {
        "id": msg_id, "session": session, "role": role, "input": input, "output": output,
        "total": input + output if total is None else total, "elapsed": elapsed, "at": at,
    })


def daily(conn: psycopg.Connection) -> tuple[int, ...]:
    """(messages, input, output, total, active_minutes, sessions_created) of Alice, all days."""
    return tuple(int(x) for x in conn.execute(DAILY, (ALICE,)).fetchone())


@pytest.fixture
def full(remote_dsn: str) -> Iterator[psycopg.Connection]:
    """chatsync's own schema (corrected analytics), Alice signed up with one session."""
    with psycopg.connect(remote_dsn, autocommit=True) as conn:
        conn.execute(PROFILE, (ALICE,))
        conn.execute(NEW_SESSION, ("s1", ALICE))
        yield conn


@pytest.fixture(params=["plain", "corrected"])
def app_db(request: pytest.FixtureRequest, original_dsn: str) -> Iterator[psycopg.Connection]:
    """The app's deployment after `chatsync migrate` (plain) or with --corrected-analytics;
    Alice signed up through the app's sign-up trigger, with one session."""
    with psycopg.connect(original_dsn, autocommit=True) as conn:
        migrate(conn, corrected_analytics=request.param == "corrected")
        conn.execute(SIGN_UP, (ALICE,))
        conn.execute(NEW_SESSION, ("s1", ALICE))
        yield conn


@pytest.fixture
def corrected(original_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(original_dsn, autocommit=True) as conn:
        migrate(conn, corrected_analytics=True)
        conn.execute(SIGN_UP, (ALICE,))
        conn.execute(NEW_SESSION, ("s1", ALICE))
        yield conn


# --- item 8: counters do not overflow ------------------------------------------------------

@pytest.mark.parametrize("schema", ["full", "corrected"])
def test_a_message_at_the_int_maximum_does_not_block_the_account(
    schema: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    conn: psycopg.Connection = request.getfixturevalue(schema)
    web_message(conn, "huge", "s1", input=INT_MAX, total=INT_MAX)
    # the web app's own inserts go on working, and so do the account's syncs
    web_message(conn, "after", "s1", input=10, output=5)
    web_message(conn, "again", "s1", role="user", input=INT_MAX, total=INT_MAX)
    dsn = conn.info.dsn
    with Store(tmp_path / "s.db") as store:
        store.sign_in(ALICE, "alice@example.com")
        conv = store.create_conversation("device")
        store.add_message(conv.id, "user", "from the device", input_tokens=7, total_tokens=7)
    engine = SyncEngine(tmp_path / "s.db", dsn)
    try:
        report = engine.sync()
    finally:
        engine.close()
    assert report.ok, report.error

    expected_tokens = 2 * INT_MAX + 15 + 7
    assert daily(conn)[:4] == (4, 2 * INT_MAX + 17, 5, expected_tokens)
    stats = conn.execute("SELECT usage_stats FROM profiles WHERE id = %s", (ALICE,)).fetchone()[0]
    assert (stats["total_messages"], stats["total_tokens"]) == (4, expected_tokens)
    summary = conn.execute(
        "SELECT messages_today, tokens_today FROM api_user_summary WHERE id = %s", (ALICE,)
    ).fetchone()
    assert tuple(int(x) for x in summary) == (4, expected_tokens)
    # the session's statistics saturate at its int column's bound instead of failing
    assert conn.execute(
        "SELECT message_count, total_tokens FROM chat_sessions WHERE id = 's1'"
    ).fetchone() == (3, INT_MAX)


def test_a_lifetime_past_two_to_the_31_is_right(full: psycopg.Connection) -> None:
    per_message = 100_000_000  # the device's per-message bound
    for i in range(25):
        web_message(full, f"m{i}", "s1", input=per_message, output=per_message,
                    at=f"2026-01-{i + 1:02d}T12:00:00Z")
    assert daily(full)[3] == 25 * 2 * per_message > 2**31
    assert usage(full) == audited_truth(full)


def test_widening_keeps_the_views_options_and_grants(
    original_dsn: str, remote_dsn: str
) -> None:
    """0005 recreates api_user_summary as it was: options, owner, grants."""
    facts = """
    SELECT c.reloptions, c.relacl::text[], pg_get_userbyid(c.relowner),
           (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
             WHERE attrelid = c.oid AND attnum > 0)
    FROM pg_class AS c WHERE c.oid = 'public.api_user_summary'::regclass
    """
    for dsn, options in ((remote_dsn, ["security_invoker=true"]), (original_dsn, None)):
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            reloptions, acl, owner, columns = conn.execute(facts).fetchone()
            assert reloptions == options
            assert any(a.startswith("authenticated=r/") for a in acl)
            assert owner == "postgres"
            assert columns[-3:] == ["messages_today", "tokens_today", "total_sessions"]
            types = dict(conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'user_usage_daily'").fetchall())
            assert types["input_tokens"] == types["active_minutes"] == "bigint"


# --- item 9: negative tokens never lower usage ----------------------------------------------

def test_negative_tokens_written_by_the_web_app_count_as_zero(full: psycopg.Connection) -> None:
    web_message(full, "ok", "s1", input=100, output=50)
    web_message(full, "neg", "s1", input=-1_000_000, output=-5, elapsed=-7)
    assert daily(full)[:5] == (2, 100, 50, 150, 0)
    # corrected later: counted by its now countable value, never by the difference
    full.execute("UPDATE chat_messages SET input_tokens = 20 WHERE id = 'neg'")
    assert daily(full)[:4] == (2, 120, 50, 170)
    full.execute("UPDATE chat_messages SET input_tokens = -3 WHERE id = 'neg'")
    assert daily(full)[:4] == (2, 100, 50, 150)
    assert usage(full) == audited_truth(full)


# --- item 4: only what was wrong changes ------------------------------------------------------

def test_active_minutes_and_sessions_created_as_the_app_keeps_them(
    app_db: psycopg.Connection,
) -> None:
    web_message(app_db, "a1", "s1", elapsed=900, input=3, output=4)
    web_message(app_db, "u1", "s1", role="user", elapsed=50, input=2)
    app_db.execute(NEW_SESSION, ("s2", ALICE))
    # an assistant's elapsed_time is active time; a user's is not; sessions are not counted
    assert daily(app_db)[4:] == (900, 0)
    stats = app_db.execute("SELECT usage_stats FROM profiles WHERE id = %s", (ALICE,)).fetchone()
    assert stats[0]["sessions_created"] == 0


def test_corrected_active_minutes_count_a_message_once(corrected: psycopg.Connection) -> None:
    web_message(corrected, "a1", "s1", elapsed=900)
    corrected.execute("UPDATE chat_messages SET content = 'edited' WHERE id = 'a1'")
    assert daily(corrected)[4] == 900  # the app's trigger would count 1800: a re-count
    corrected.execute("UPDATE chat_messages SET elapsed_time = 1000 WHERE id = 'a1'")
    assert daily(corrected)[4] == 1000


def session_times(conn: psycopg.Connection, session: str = "s1") -> tuple[Any, Any]:
    return conn.execute(SESSION_TIMES, (session,)).fetchone()


def test_every_message_write_bumps_its_session(app_db: psycopg.Connection) -> None:
    """The web app orders conversations by updated_at: an insert, an edit that leaves the
    statistics unchanged, and a delete each bump it, as the app's trigger does."""
    web_message(app_db, "a1", "s1", input=1)
    web_message(app_db, "a2", "s1", input=1, at="2020-01-01T00:00:00Z")
    for statement in ("UPDATE chat_messages SET content = 'edited' WHERE id = 'a2'",
                      "UPDATE chat_messages SET metadata = '{\"k\": 1}' WHERE id = 'a2'",
                      "DELETE FROM chat_messages WHERE id = 'a2'"):
        before = session_times(app_db)
        app_db.execute(statement)
        after = session_times(app_db)
        assert after[0] > before[0] and after[1] > before[1], statement


def test_a_resend_writes_nothing_and_bumps_nothing(
    corrected: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.sign_in(ALICE, "alice@example.com")
        conv = store.create_conversation("device")
        store.add_message(conv.id, "user", "hello", input_tokens=3, total_tokens=3)
    engine = SyncEngine(path, corrected.info.dsn)
    try:
        assert engine.sync().ok
        before = session_times(corrected, conv.id), usage(corrected)
        with Store(path) as store:  # as if the marks were lost: everything is sent again
            store.conn.execute("UPDATE conversations SET synced_rev = 0")
            store.conn.execute("UPDATE messages SET synced_rev = 0")
        report = engine.sync()
        assert report.ok and report.messages.sent == 1 and report.messages.written == 0
    finally:
        engine.close()
    assert (session_times(corrected, conv.id), usage(corrected)) == before


def test_signing_up_in_the_app_creates_the_profile(original_dsn: str) -> None:
    """The emulation's sign-up trigger, as the app's: a new auth user gets a profile."""
    with psycopg.connect(original_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, raw_user_meta_data) "
            "VALUES (%s, 'alice@example.com', '{\"name\": \"Alice A\"}')", (ALICE,))
        row = conn.execute(
            "SELECT email, full_name, usage_stats ? 'last_reset', last_active IS NOT NULL "
            "FROM profiles WHERE id = %s", (ALICE,)).fetchone()
        assert row == ("alice@example.com", "Alice A", True, True)


def test_a_message_edit_marks_its_user_active(app_db: psycopg.Connection) -> None:
    """The app's usage function sets profiles.last_active on every user or assistant
    message written, whatever changed."""
    web_message(app_db, "a1", "s1", input=1)
    last_active = "SELECT last_active FROM profiles WHERE id = %s"
    before = app_db.execute(last_active, (ALICE,)).fetchone()[0]
    app_db.execute("UPDATE chat_messages SET content = 'edited' WHERE id = 'a1'")
    assert app_db.execute(last_active, (ALICE,)).fetchone()[0] > before
