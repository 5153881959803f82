"""What is on the remote, read as a superuser: rows, usage figures, write counters, truth."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import psycopg

APP_TABLES = ("profiles", "chat_sessions", "chat_messages", "user_usage_daily")


def write_counts(conn: psycopg.Connection, *, timeout_s: float = 10) -> dict[str, int]:
    """Inserted + updated + deleted tuples per app table, from pg_stat_user_tables.

    A backend reports its counters when it exits (and otherwise only now and then), so this
    first waits until every other client of the database has disconnected: close the
    engines (`SyncEngine.disconnect()`) before reading.
    """
    deadline = time.monotonic() + timeout_s
    while conn.execute(OTHER_CLIENTS).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
        "WHERE schemaname = 'public' AND relname = ANY(%s)",
        (list(APP_TABLES),),
    ).fetchall()
    return {name: int(n) for name, n in rows}


OTHER_CLIENTS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


def usage(conn: psycopg.Connection) -> dict[str, Any]:
    """Every usage figure the app shows, keyed for comparison."""
    daily = {
        (str(r[0]), r[1]): {
            "messages_sent": r[2], "messages_received": r[3], "input_tokens": r[4],
            "output_tokens": r[5], "total_tokens": r[6], "models_used": r[7] or {},
            "sessions_created": r[8], "active_minutes": r[9],
        }
        for r in conn.execute(
            "SELECT user_id, usage_date, messages_sent, messages_received, input_tokens, "
            "output_tokens, total_tokens, models_used, sessions_created, active_minutes"
            " FROM user_usage_daily"
            # A day whose usage moved away entirely (a message's timestamp changed) keeps a
            # row of zeros; it says the same as no row.
            " WHERE (messages_sent, messages_received, input_tokens, output_tokens,"
            "        total_tokens, sessions_created, active_minutes) <> (0, 0, 0, 0, 0, 0, 0)"
            "    OR models_used <> '{}'"
        )
    }
    # last_reset: when the app's profile trigger started counting, not a count.
    profiles = {
        str(r[0]): r[1]
        for r in conn.execute("SELECT id, usage_stats - 'last_reset' FROM profiles")
    }
    summary = {
        str(r[0]): (int(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            "SELECT id, messages_today, tokens_today, total_sessions FROM api_user_summary"
        )
    }
    return {"daily": daily, "profiles": profiles, "summary": summary}


def truth(conn: psycopg.Connection, messages: list[dict[str, Any]],
          sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """The usage figures computed from the messages and sessions themselves.

    *messages* and *sessions* are every row that ever reached the remote, in its final
    version (deleting does not refund usage). Only user and assistant messages count; a
    message counts on the UTC day of its own timestamp; tokens below zero count as 0; an
    assistant message adds its elapsed_time to active_minutes; sessions_created is never
    counted (as in the app). *sessions* give each conversation's owner.
    """
    owner = {s["id"]: s["user_id"] for s in sessions}
    daily: dict[tuple[str, Any], dict[str, Any]] = defaultdict(lambda: {
        "messages_sent": 0, "messages_received": 0, "input_tokens": 0, "output_tokens": 0,
        "total_tokens": 0, "models_used": Counter(), "sessions_created": 0,
        "active_minutes": 0,
    })
    profiles: dict[str, dict[str, int]] = defaultdict(
        lambda: {"total_messages": 0, "total_tokens": 0, "sessions_created": 0}
    )
    for m in messages:
        if m["role"] not in ("user", "assistant"):
            continue
        user = owner[m["session_id"]]
        d = daily[(user, m["message_timestamp"].date())]
        d["messages_sent" if m["role"] == "user" else "messages_received"] += 1
        inp, out = max(m["input_tokens"] or 0, 0), max(m["output_tokens"] or 0, 0)
        d["input_tokens"] += inp
        d["output_tokens"] += out
        d["total_tokens"] += inp + out
        if m["role"] == "assistant":
            d["active_minutes"] += max(m["elapsed_time"] or 0, 0)
        if m["model"]:
            d["models_used"][m["model"]] += 1
        p = profiles[user]
        p["total_messages"] += 1
        p["total_tokens"] += inp + out
    today = conn.execute("SELECT current_date").fetchone()[0]
    all_users = {str(r[0]) for r in conn.execute("SELECT id FROM profiles")}
    summary = {}
    for user in all_users:
        d = daily.get((user, today))
        summary[user] = (
            (d["messages_sent"] + d["messages_received"]) if d else 0,
            d["total_tokens"] if d else 0,
            sum(1 for s in remote_rows(conn, "chat_sessions") if str(s["user_id"]) == user),
        )
    return {
        "daily": {
            k: {**v, "models_used": dict(v["models_used"])} for k, v in daily.items()
        },
        "profiles": {u: dict(p) for u, p in profiles.items()} | {
            u: {"total_messages": 0, "total_tokens": 0, "sessions_created": 0}
            for u in all_users if u not in profiles
        },
        "summary": summary,
    }


def remote_rows(conn: psycopg.Connection, table: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT * FROM public.{table} ORDER BY id").fetchall()


AUDIT_SESSIONS = "SELECT id, user_id::text, created_at FROM test_audit.sessions_ever"
AUDIT_MESSAGES = "SELECT * FROM test_audit.messages_ever"


def audited_truth(remote: psycopg.Connection) -> dict[str, Any]:
    """Usage computed from every row that ever reached the remote (tests/sql/audit.sql)."""
    with remote.cursor(row_factory=psycopg.rows.dict_row) as cur:
        sessions = cur.execute(AUDIT_SESSIONS).fetchall()
        messages = cur.execute(AUDIT_MESSAGES).fetchall()
    return truth(remote, messages, sessions)
