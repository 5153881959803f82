"""Against a faithful copy of the web app's ORIGINAL schema and triggers (issue 2, point 4).

The original `on_message_change` trigger counts usage on every INSERT and every UPDATE of a
message, on the day of the sync. chatsync must count each message once there too, and never
again however often it re-sends; the app's own endpoint, re-upserting every row, inflates
the same figures (shown here, so these tests could fail).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from daemon.engine import SyncEngine
from localstore import Store
from remote.migrate import migrate
from tests.support import ALICE
from tests.support.endpoint import EndpointResult, client_payload, endpoint_sync
from tests.support.remote_facts import usage, write_counts

MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", None)
CONVERSATIONS = 4
PER_CONVERSATION = 12

# The app's own triggers and chatsync's analytics ones (not the test audit, not the pull
# feed's, which count nothing).
TRIGGERS = """
SELECT tgname FROM pg_trigger
WHERE tgrelid = ANY(ARRAY['public.chat_messages'::regclass, 'public.chat_sessions'::regclass])
  AND NOT tgisinternal AND tgname NOT LIKE 'test_audit%' AND tgname NOT LIKE 'chatsync_feed%'
ORDER BY tgname
"""
SIGN_UP = "INSERT INTO public.profiles (id, email) VALUES (%s, 'alice@example.com')"
SYNC_FUNCTION = "SELECT public.sync_user_conversations(%s, %s)"
RESET_SYNCED = ("UPDATE conversations SET synced_rev = 0", "UPDATE messages SET synced_rev = 0")


@pytest.fixture
def filled_store(store_path: Path) -> Path:
    """Alice, signed in, with user/assistant/system messages, some completed by an update."""
    with Store(store_path) as store:
        store.sign_in(ALICE, "alice@example.com")
        n = 0
        for c in range(CONVERSATIONS):
            conv = store.create_conversation(f"Conversation {c}")
            store.add_message(conv.id, "system", "You are helpful.")
            for i in range(PER_CONVERSATION):
                n += 1
                user = store.add_message(
                    conv.id, "user", f"question {n}", input_tokens=10 + i, total_tokens=10 + i
                )
                reply = store.add_message(
                    conv.id, "assistant", "", model=MODELS[n % len(MODELS)],
                    user_message_id=user.id, content_type="markdown",
                )
                # streamed: inserted empty, completed by an update before any sync
                store.update_message(
                    reply.id, content=f"answer {n} " * 20, input_tokens=30 + i,
                    output_tokens=100 + n, total_tokens=130 + i + n, elapsed_time=900 + n,
                )
    return store_path


def local_messages(store_path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(store_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM messages")]
    finally:
        conn.close()


def expected_original(conn: psycopg.Connection, store_path: Path) -> dict[str, Any]:
    """What the original triggers show when each message is counted exactly once.

    They count on the day of the sync (current_date), and never count sessions
    (`update_session_stats` passes `false` for session_created).
    """
    sent = received = inp = out = active = 0
    models: Counter[str] = Counter()
    for m in local_messages(store_path):
        if m["role"] not in ("user", "assistant"):
            continue
        sent += m["role"] == "user"
        received += m["role"] == "assistant"
        # the app adds an assistant message's elapsed_time to active_minutes
        active += m["elapsed_time"] if m["role"] == "assistant" else 0
        inp += m["input_tokens"]
        out += m["output_tokens"]
        if m["model"]:
            models[m["model"]] += 1
    today = conn.execute("SELECT current_date").fetchone()[0]
    return {
        "daily": {
            (ALICE, today): {
                "messages_sent": sent, "messages_received": received, "input_tokens": inp,
                "output_tokens": out, "total_tokens": inp + out, "models_used": dict(models),
                "sessions_created": 0, "active_minutes": active,
            }
        },
        "profiles": {
            ALICE: {"total_messages": sent + received, "total_tokens": inp + out,
                    "sessions_created": 0}
        },
        "summary": {ALICE: (sent + received, inp + out, CONVERSATIONS)},
    }


@pytest.fixture
def original(original_dsn: str) -> Iterator[psycopg.Connection]:
    """The app's deployment, as found: original schema and triggers, no chatsync objects."""
    with psycopg.connect(original_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def deployed(original: psycopg.Connection) -> psycopg.Connection:
    """The app's deployment after a plain `chatsync migrate` (what an operator runs first):
    chatsync's own objects added, the app's tables and analytics triggers untouched."""
    migrate(original)
    return original


def sync(store_path: Path, dsn: str, batch_size: int = 7) -> Any:
    engine = SyncEngine(store_path, dsn, batch_size=batch_size)
    try:
        report = engine.sync()
    finally:
        engine.close()
    assert report.ok, report.error
    return report


def app_endpoint(dsn: str, store_path: Path) -> EndpointResult:
    """One `POST /api/chat/sync` of everything in the store, from its own connection."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return endpoint_sync(conn, ALICE, client_payload(store_path, ALICE))


def force_resend(store_path: Path) -> None:
    """As if the process died after the remote commit but before marking rows synced."""
    conn = sqlite3.connect(store_path)
    try:
        with conn:
            for statement in RESET_SYNCED:
                conn.execute(statement)
    finally:
        conn.close()


def triggers(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(TRIGGERS)]


def test_original_schema_has_the_original_triggers(original: psycopg.Connection) -> None:
    assert triggers(original) == ["on_message_change", "on_session_updated"]
    kinds = dict(original.execute(
        "SELECT tgname, tgtype FROM pg_trigger WHERE tgname IN "
        "('on_message_change', 'on_session_updated')"
    ).fetchall())
    assert kinds["on_message_change"] & 1  # FOR EACH ROW
    assert kinds["on_session_updated"] & 1


def test_first_sync_counts_each_message_once(
    filled_store: Path, original_dsn: str, deployed: psycopg.Connection
) -> None:
    report = sync(filled_store, original_dsn)

    total = CONVERSATIONS * (1 + 2 * PER_CONVERSATION)
    assert report.conversations.sent == CONVERSATIONS
    assert report.messages.sent == total
    assert report.messages.written == total
    assert report.quarantined == 0
    assert usage(deployed) == expected_original(deployed, filled_store)


def test_resync_never_recounts(
    filled_store: Path, original_dsn: str, deployed: psycopg.Connection
) -> None:
    sync(filled_store, original_dsn)
    expected = expected_original(deployed, filled_store)
    assert usage(deployed) == expected
    before = write_counts(deployed)

    # nothing changed: nothing is sent
    again = sync(filled_store, original_dsn)
    assert again.sent == 0

    # everything re-sent (crash before the local mark): identical rows write nothing
    force_resend(filled_store)
    resend = sync(filled_store, original_dsn)
    assert resend.conversations.sent == CONVERSATIONS
    assert resend.messages.sent == CONVERSATIONS * (1 + 2 * PER_CONVERSATION)
    assert resend.conversations.written == resend.messages.written == 0

    assert write_counts(deployed) == before
    assert usage(deployed) == expected


def test_the_apps_endpoint_inflates_the_same_schema(
    filled_store: Path, original_dsn: str, deployed: psycopg.Connection
) -> None:
    sync(filled_store, original_dsn)
    once = expected_original(deployed, filled_store)
    assert usage(deployed) == once
    before = write_counts(deployed)

    result = app_endpoint(original_dsn, filled_store)
    assert result.errors == 0, result.details

    after = usage(deployed)
    daily = after["daily"][next(iter(once["daily"]))]
    expected_daily = next(iter(once["daily"].values()))
    # every user/assistant message counted a second time, tokens and models too
    for key in ("messages_sent", "messages_received", "input_tokens", "output_tokens",
                "total_tokens"):
        assert daily[key] == 2 * expected_daily[key], key
    assert daily["models_used"] == {k: 2 * v for k, v in expected_daily["models_used"].items()}
    assert after["profiles"][ALICE]["total_messages"] == 2 * once["profiles"][ALICE][
        "total_messages"]
    assert after["summary"][ALICE][:2] == tuple(2 * x for x in once["summary"][ALICE][:2])
    # and it rewrote every message, with a session and usage write per message
    grew = {t: write_counts(deployed)[t] - before[t] for t in before}
    assert grew["chat_messages"] == CONVERSATIONS * (1 + 2 * PER_CONVERSATION)
    assert grew["chat_sessions"] > grew["chat_messages"]


def versions(outcomes: list[Any]) -> dict[int, str]:
    """Outcomes of the migrations this file is about (later ones may exist)."""
    return {o.version: o.action for o in outcomes if o.version <= 3}


def test_plain_migrate_leaves_the_original_triggers(
    filled_store: Path, original_dsn: str, original: psycopg.Connection
) -> None:
    outcomes = versions(migrate(original))
    assert outcomes == {1: "applied", 2: "adopted", 3: "left for --corrected-analytics"}
    assert triggers(original) == ["on_message_change", "on_session_updated"]
    recorded = dict(original.execute(
        "SELECT version, outcome FROM chatsync.schema_migrations WHERE version <= 3").fetchall())
    assert recorded == {1: "applied", 2: "adopted"}

    # chatsync works there and counts once, however often it re-sends
    sync(filled_store, original_dsn)
    force_resend(filled_store)
    sync(filled_store, original_dsn)
    assert usage(original) == expected_original(original, filled_store)


def test_corrected_analytics_migration_replaces_the_triggers(
    filled_store: Path, original_dsn: str, original: psycopg.Connection
) -> None:
    # an existing deployment whose history the app itself synced, counted once
    original.execute(SIGN_UP, (ALICE,))
    assert app_endpoint(original_dsn, filled_store).errors == 0
    counted = usage(original)
    assert counted == expected_original(original, filled_store)

    outcomes = versions(migrate(original, corrected_analytics=True))
    assert outcomes == {1: "applied", 2: "adopted", 3: "applied"}
    recorded = dict(original.execute(
        "SELECT version, outcome FROM chatsync.schema_migrations WHERE version <= 3").fetchall())
    assert recorded == {1: "applied", 2: "adopted", 3: "applied"}
    assert "on_message_change" not in triggers(original)
    assert {"chatsync_messages_inserted", "chatsync_messages_updated",
            "chatsync_messages_deleted", "on_session_updated"} <= set(triggers(original))
    # sessions_created is not counted, as by the app (0006 drops 0003's trigger)
    assert "chatsync_sessions_inserted" not in triggers(original)
    assert usage(original) == counted  # migrating recounts nothing

    # chatsync finds every row already there: it sends them all and writes nothing
    before = write_counts(original)
    report = sync(filled_store, original_dsn)
    assert report.messages.sent == CONVERSATIONS * (1 + 2 * PER_CONVERSATION)
    assert report.conversations.written == report.messages.written == 0
    assert write_counts(original) == before
    assert usage(original) == counted

    # and with the corrected triggers even the endpoint's blind re-upsert counts nothing
    assert app_endpoint(original_dsn, filled_store).errors == 0
    assert usage(original) == counted


def test_corrected_later_after_plain_migrate(original: psycopg.Connection) -> None:
    migrate(original)
    outcomes = versions(migrate(original, corrected_analytics=True))
    assert outcomes == {3: "applied"}
    assert "on_message_change" not in triggers(original)


def test_the_apps_bulk_function_recounts_too(
    filled_store: Path, original_dsn: str, original: psycopg.Connection
) -> None:
    """`sync_user_conversations` (unused by the endpoint) has the same flaw."""
    payload = Jsonb(client_payload(filled_store, ALICE))
    original.execute(SIGN_UP, (ALICE,))
    for _ in range(2):
        with original.transaction():
            original.execute("SET LOCAL ROLE authenticated")
            original.execute("SELECT set_config('request.jwt.claims', %s, true)",
                             (json.dumps({"sub": ALICE}),))
            result = original.execute(SYNC_FUNCTION, (ALICE, payload)).fetchone()[0]
        assert result["synced"] == CONVERSATIONS and result["errors"] == 0
    once = expected_original(original, filled_store)
    assert usage(original)["profiles"][ALICE]["total_messages"] == 2 * once["profiles"][ALICE][
        "total_messages"]
