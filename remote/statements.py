"""The SQL the push engine runs, one named constant each.

Rows are COPYed as text into a transaction-local staging table and cast in the upsert, so
a value PostgreSQL refuses fails in the upsert, where a range of rows can be retried to
find it, rather than failing the whole COPY.

The upserts compare only the columns the client owns. An unchanged row is then not updated
at all, and no trigger fires for it: re-sending is a no-op by construction. `updated_at`,
`last_activity` and the statistics are the server's and are never compared.
"""

from __future__ import annotations

from psycopg import sql

from localstore.columns import CONVERSATIONS, MESSAGES, PUSH_CAST, STAGE_TYPE, Column, Table


def _text(composed: sql.Composable) -> str:
    # No connection is needed to quote identifiers: psycopg's own rules, once, at import.
    return composed.as_string(None)


def _stage(stage: str, table: Table) -> str:
    """The transaction-local staging table: n, every synced column as text, was_synced."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.stage), sql.SQL(STAGE_TYPE))
        for c in table.columns)
    return _text(sql.SQL(
        "\nCREATE TEMP TABLE {stage} (\n    n int, {columns},\n    was_synced text\n"
        ") ON COMMIT DROP\n"
    ).format(stage=sql.Identifier(stage), columns=columns))


def _copy(stage: str, table: Table) -> str:
    columns = sql.SQL(", ").join(sql.Identifier(c.stage) for c in table.columns)
    return _text(sql.SQL("\nCOPY {stage} (n, {columns},\n    was_synced)\nFROM STDIN\n").format(
        stage=sql.Identifier(stage), columns=columns))


def _value(table: Table, column: Column) -> sql.Composable:
    """The upsert's value of *column* from the staged row: cast to its kind, or the spec's
    push_sql over the staged columns."""
    if column.push_sql is not None:
        return sql.SQL(column.push_sql).format(
            **{c.name: sql.Identifier(c.stage) for c in table.columns})
    cast = PUSH_CAST[column.kind]
    if cast is None:
        return sql.Identifier(column.stage)
    return sql.SQL("{}::{}").format(sql.Identifier(column.stage), sql.SQL(cast))


def _upsert(stage: str, table: Table, alias: str) -> str:
    """Insert the staged rows [lo, hi) that are new to the remote, or known there (was_synced
    and still present: a row deleted there is not revived); update a row only where a
    client-owned column differs."""
    # (column, its remote name): the store's own columns (`error`) travel in another's value
    pushed = [(c, c.remote) for c in table.columns if c.remote is not None]
    compared = [sql.Identifier(name) for c, name in pushed if c.compared]
    a, remote = sql.Identifier(alias), sql.Identifier("public", table.remote)

    def listed(parts: list[sql.Composable]) -> sql.Composable:
        return sql.SQL(", ").join(parts)

    return _text(sql.SQL("""
INSERT INTO {remote} AS {a} ({columns})
SELECT {values}
FROM {stage} AS st
WHERE n >= %(lo)s AND n < %(hi)s
  AND (was_synced = '0' OR EXISTS (SELECT 1 FROM {remote} AS x WHERE x.id = st.id))
ON CONFLICT (id) DO UPDATE SET
    {sets}
WHERE ({mine})
      IS DISTINCT FROM
      ({theirs})
RETURNING {a}.id
""").format(
        remote=remote, a=a, stage=sql.Identifier(stage),
        columns=listed([sql.Identifier(name) for _, name in pushed]),
        values=listed([_value(table, c) for c, _ in pushed]),
        sets=listed([sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in compared]),
        mine=listed([sql.SQL("{}.{}").format(a, c) for c in compared]),
        theirs=listed([sql.SQL("EXCLUDED.{}").format(c) for c in compared]),
    ))


PROFILE_EXISTS = "SELECT 1 FROM public.profiles WHERE id = %(user_id)s"
CREATE_PROFILE = """
INSERT INTO public.profiles (id, email) VALUES (%(user_id)s, %(email)s)
ON CONFLICT (id) DO NOTHING
"""

# The push transaction's id, read before its COMMIT: pg_xact_status() on it later tells
# whether the batch reached the remote.
CURRENT_XID = "SELECT pg_current_xact_id()::text"
XACT_STATUS = "SELECT pg_xact_status(%(xid)s::xid8)"

# Staging tables, COPY and upserts, one per synced table, derived from its column spec
# (localstore/columns.py): the names are constants, composed with psycopg.sql.Identifier
# once at import, so the statements are plain text like the rest. Only values are bound.
STAGE_SESSIONS = _stage("chatsync_stage_sessions", CONVERSATIONS)
COPY_SESSIONS = _copy("chatsync_stage_sessions", CONVERSATIONS)
UPSERT_SESSIONS = _upsert("chatsync_stage_sessions", CONVERSATIONS, "s")

STAGE_MESSAGES = _stage("chatsync_stage_messages", MESSAGES)
COPY_MESSAGES = _copy("chatsync_stage_messages", MESSAGES)
# The app keeps an error's text in error_message. The store keeps it too (pulled), beside the
# flag clients set: a flagged message is sent with its text, or 'error' when it has none, and
# an unflagged one with none (the spec's push_sql). The text is compared, so a device's edit
# of the content never replaces the app's text.
UPSERT_MESSAGES = _upsert("chatsync_stage_messages", MESSAGES, "m")

# A row the remote had once (was_synced) but no longer has was deleted there, by another
# device or the server, after our last pull: it is not inserted again (that would revive it
# and count its usage twice). It stays dirty; the next pull applies the delete here.
GONE_SESSIONS = """
SELECT st.id FROM chatsync_stage_sessions AS st
WHERE st.was_synced = '1'
  AND NOT EXISTS (SELECT 1 FROM public.chat_sessions AS x WHERE x.id = st.id)
"""
GONE_MESSAGES = """
SELECT st.id FROM chatsync_stage_messages AS st
WHERE st.was_synced = '1'
  AND NOT EXISTS (SELECT 1 FROM public.chat_messages AS x WHERE x.id = st.id)
"""

# Under row-level security another user's rows are simply not visible, so these delete
# only the signed-in user's own.
DELETE_SESSIONS = "DELETE FROM public.chat_sessions WHERE id = ANY(%(ids)s)"
DELETE_MESSAGES = "DELETE FROM public.chat_messages WHERE id = ANY(%(ids)s)"
