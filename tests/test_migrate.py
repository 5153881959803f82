"""`chatsync migrate` on an existing deployment: an opt-in stays an opt-in (issue 9, item 1).

The app's analytics trigger (`on_message_change`) must survive any number of plain
`chatsync migrate` runs, of this and of later chatsync versions; once the operator opts in
with `--corrected-analytics`, later opt-in migrations follow on plain runs.
"""

from __future__ import annotations

import psycopg
import pytest

import remote.migrate as migrate_module
from remote.migrate import Migration, migrate, migrations

LATER_FIX = Migration(
    9999, "later_corrected_fix",
    "-- chatsync: existing-deployments=opt-in\n"
    "CREATE TABLE chatsync.later_fix_ran (x int);\n",
    "opt-in",
)
HAS_APP_TRIGGER = """
SELECT EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgname = 'on_message_change' AND NOT tgisinternal)
"""
RECORDED = "SELECT version, outcome FROM chatsync.schema_migrations ORDER BY version"


def app_trigger(conn: psycopg.Connection) -> bool:
    return bool(conn.execute(HAS_APP_TRIGGER).fetchone()[0])


def recorded(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute(RECORDED).fetchall())


@pytest.fixture
def original(original_dsn: str):
    with psycopg.connect(original_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def with_later_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later chatsync version that ships one more opt-in migration."""
    shipped = migrations()
    monkeypatch.setattr(migrate_module, "migrations", lambda: [*shipped, LATER_FIX])


def test_plain_migrate_never_replaces_the_apps_trigger(original: psycopg.Connection) -> None:
    for _ in range(5):
        migrate(original)
        assert app_trigger(original)
    opt_in = {m.version for m in migrations() if m.policy == "opt-in"}
    assert opt_in and not opt_in & set(recorded(original))
    assert recorded(original)[2] == "adopted"


def test_upgrades_one_version_at_a_time_never_opt_in(
    original: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chatsync version ships one more migration; plain runs of each leave the app's
    analytics alone."""
    shipped = migrations()
    for k in range(1, len(shipped) + 1):
        monkeypatch.setattr(migrate_module, "migrations", lambda k=k: shipped[:k])
        migrate(original)
        migrate(original)
        assert app_trigger(original), shipped[k - 1].name


def test_opting_in_applies_the_group_and_later_fixes_follow(
    original: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(original)
    outcomes = {o.version: o.action for o in migrate(original, corrected_analytics=True)}
    opt_in = [m.version for m in migrations() if m.policy == "opt-in"]
    assert {v: outcomes[v] for v in opt_in} == {v: "applied" for v in opt_in}
    assert not app_trigger(original)

    # a later version ships another opt-in fix: a plain run applies it, since the
    # operator opted in before
    shipped = migrations()
    monkeypatch.setattr(migrate_module, "migrations", lambda: [*shipped, LATER_FIX])
    assert [(o.version, o.action) for o in migrate(original)] == [(9999, "applied")]
    assert recorded(original)[9999] == "applied"


@pytest.mark.usefixtures("with_later_fix")
def test_a_later_opt_in_fix_waits_where_nobody_opted_in(original: psycopg.Connection) -> None:
    migrate(original)
    outcomes = {o.version: o.action for o in migrate(original)}
    assert outcomes[9999] == "left for --corrected-analytics"
    assert 9999 not in recorded(original)
    assert app_trigger(original)


@pytest.mark.usefixtures("with_later_fix")
def test_a_new_database_gets_every_migration(remote_dsn: str) -> None:
    # the template already ran the shipped ones: the later fix applies on a plain run
    with psycopg.connect(remote_dsn, autocommit=True) as conn:
        assert [(o.version, o.action) for o in migrate(conn)] == [(9999, "applied")]
        assert set(recorded(conn).values()) == {"applied"}
