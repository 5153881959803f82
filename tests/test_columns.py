"""The column spec (localstore/columns.py) against reality: the real SQLite store after its
migrations, the real PostgreSQL tables after chatsync's migrations and in the web app's
original schema, and the typed models that are written out beside it.

A column added to a migration but not to the spec (or the other way round) fails here,
naming it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import psycopg
import pytest

from localstore import columns as spec
from localstore.connection import connect
from localstore.models import Conversation, Message
from remote import pull, push
from remote.server import wire

TABLES = list(spec.TABLES.values())
STATS_TABLE = "server_conversation_stats"
REMOTE_COLUMNS = """
SELECT column_name, data_type, is_nullable = 'YES'
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = %s
"""


@pytest.fixture
def local(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "spec.db")  # every local migration applied
    yield conn
    conn.close()


def _local_columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[str, bool]]:
    """name -> (declared type, NOT NULL), generated columns included. A TEXT PRIMARY KEY
    is not NOT NULL in SQLite; the store's ids refuse NULL by their CHECK (typeof = 'text')."""
    return {r["name"]: (r["type"].upper(), bool(r["notnull"] or r["pk"]))
            for r in conn.execute(f"PRAGMA table_xinfo({table})")}


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_store_tables_have_the_spec_columns(local: sqlite3.Connection, table: spec.Table) -> None:
    actual = _local_columns(local, table.name)
    expected = {*table.names, *spec.BOOKKEEPING}
    assert set(actual) - expected == set(), f"{table.name}: columns missing from the spec"
    assert expected - set(actual) == set(), f"{table.name}: spec columns not in the store"
    for c in table.columns:
        declared, not_null = actual[c.name]
        assert declared == spec.SQLITE_TYPE[c.kind], f"{table.name}.{c.name}: {declared}"
        assert not_null == (not c.nullable), f"{table.name}.{c.name}: NOT NULL is {not_null}"


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_the_stores_merge_base_triggers_copy_every_compared_column(
        local: sqlite3.Connection, table: spec.Table) -> None:
    # The triggers that keep a row's merge base (pull.sql, fidelity.sql, inflight.sql) list
    # the compared columns by hand, as SQLite triggers must: a column added to the spec but
    # not to them would leave merge bases without it.
    triggers = local.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?"
        " AND sql LIKE '%json_object(%'", (table.name,)).fetchall()
    assert len(triggers) >= 5, [t["name"] for t in triggers]
    for trigger in triggers:
        for listed in re.findall(r"json_object\((.*?)\)\s*(?:FROM|WHERE|,|\))",
                                 trigger["sql"], re.S):
            keys = re.findall(r"'(\w+)'\s*,", listed)
            assert set(keys) == set(table.compared), (trigger["name"], keys)


def test_the_store_keeps_the_server_columns(local: sqlite3.Connection) -> None:
    actual = _local_columns(local, STATS_TABLE)
    expected = {"conversation_id", *(c.name for c in spec.CONVERSATIONS.server)}
    assert set(actual) == expected
    for c in spec.CONVERSATIONS.server:
        assert actual[c.name][0] == spec.SQLITE_TYPE[c.kind], c.name
        # NULL on the remote: either the store allows it or the spec gives a default
        assert not actual[c.name][1] or c.default is not None, c.name


def _check_remote(conn: psycopg.Connection) -> None:
    for table in TABLES:
        rows = conn.execute(REMOTE_COLUMNS, (table.remote,)).fetchall()
        actual = {name: (data_type, nullable) for name, data_type, nullable in rows}
        kinds = {c.remote: c.kind for c in table.columns if c.remote is not None}
        kinds |= {c.remote: c.kind for c in table.server}
        kinds |= {c.remote: c.kind for c in table.ignored}
        assert set(actual) - set(kinds) == set(), f"{table.remote}: columns missing from the spec"
        assert set(kinds) - set(actual) == set(), f"{table.remote}: spec columns not remote"
        for name, kind in kinds.items():
            assert actual[name][0] in spec.PG_TYPES[kind], f"{table.remote}.{name}: {actual[name]}"
        for c in table.columns:
            if c.remote is None or not actual[c.remote][1] or c.nullable:
                continue
            # The remote may send NULL where the store may not: the spec says what to take
            # (a conversation's timestamps stand in for each other, see remote/pull.py).
            assert c.default is not None or c.name in ("created_at", "updated_at"), (
                f"{table.remote}.{c.remote} may be NULL, {table.name}.{c.name} may not")


def test_remote_tables_have_the_spec_columns(remote: psycopg.Connection) -> None:
    """chatsync's own migrations (remote/migrations)."""
    _check_remote(remote)


def test_the_apps_original_tables_have_the_spec_columns(original_dsn: str) -> None:
    """The web app's original schema, as an existing deployment has it."""
    with psycopg.connect(original_dsn) as conn:
        _check_remote(conn)


@pytest.mark.parametrize(("model", "table"), [(Conversation, spec.CONVERSATIONS),
                                              (Message, spec.MESSAGES)], ids=["conv", "msg"])
def test_row_models_match_the_spec(model: type, table: spec.Table) -> None:
    """The typed models are written out (for the type checker): they must not drift."""
    declared = {f.name: str(f.type) for f in fields(model)}
    assert list(declared) == [*table.names, "dirty"], (
        f"localstore/models.py {model.__name__}: fields differ from the spec's columns")
    for c in table.columns:
        assert ("None" in declared[c.name]) == c.nullable, f"{c.name}: {declared[c.name]}"
        assert (declared[c.name] == "bool") == (c.kind == "bool"), f"{c.name}"


def test_wire_rows_carry_the_spec_columns() -> None:
    assert list(wire.ConversationRow.model_fields) == [
        *spec.CONVERSATIONS.names, "was_synced", "rev"]
    assert list(wire.MessageRow.model_fields) == [*spec.MESSAGES.names, "was_synced", "rev"]


def test_one_set_of_timestamp_columns() -> None:
    from localstore import inbox

    assert push.TIMESTAMP_COLUMNS == inbox.TIME_COLUMNS == {"created_at", "updated_at",
                                                            "timestamp"}
    assert push.TIMESTAMP_COLUMNS | {"last_activity",
                                                       "last_message_timestamp"} == pull.TIME_KEYS


def test_pulled_rows_have_the_store_columns(remote: psycopg.Connection) -> None:
    """The pull's select lists give every synced column under the store's name (and the
    server's statistics under the remote's), nothing else."""
    conversation = {"id", "deleted", *spec.CONVERSATIONS.names,
                    *(c.remote for c in spec.CONVERSATIONS.server)}
    message = {"id", "deleted", *spec.MESSAGES.names}
    params = {"user_id": "00000000-0000-4000-8000-000000000000", "after": None}
    for query, expected in ((pull.ALL_CONVERSATIONS, conversation),
                            (pull.ALL_MESSAGES, message)):
        cur = remote.execute(query, params)
        assert cur.description is not None
        assert {d.name for d in cur.description} == expected


def test_spec_names_are_plain_identifiers() -> None:
    with pytest.raises(ValueError, match="identifier"):
        spec.Column('x"; drop table messages; --', "text", True, None)
