"""Applying the numbered `.sql` migrations under `remote/migrations/`.

All pending migrations run in one transaction under an advisory lock, so two `chatsync
migrate` at once apply each migration once, and a failure leaves the database as it was.

Each file's first line says what happens on an *existing deployment*, a database that
already has the web app's tables and triggers:

- `existing-deployments=run`: applied as on a new database;
- `existing-deployments=skip`: recorded as adopted, never run (the app's own schema);
- `existing-deployments=opt-in`: applied only when the operator opted in (the corrected
  analytics). The opt-in migrations form one group: on an existing deployment each is
  applied when `--corrected-analytics` is given, or when an earlier opt-in migration is
  recorded as applied (the operator opted in before, so later fixes to the corrected
  analytics follow).

A database is an existing deployment when the app's own schema migration is recorded as
adopted, or, before that is recorded, when the app's tables are already there. Once
adopted, always adopted: an opt-in stays an opt-in across any number of runs and versions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

from remote.connect import scalar

Policy = Literal["run", "skip", "opt-in"]

# The key of pg_advisory_xact_lock(bigint): an arbitrary fixed number, derived from nothing
# (it is above 2**31, so no int4 hash such as hashtext() could have produced it), the same
# in every version of chatsync, so that any two `chatsync migrate` (of whatever version)
# serialize on it. The sync server's feed pruning locks the next number
# (remote/server/retention.py PRUNE_LOCK): the two must never be equal.
MIGRATION_LOCK = 7_305_118_042
# The migration that creates the app's own tables: recorded 'adopted' on an existing
# deployment, 'applied' on a database chatsync created.
APP_SCHEMA_VERSION = 2

BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS chatsync;
CREATE TABLE IF NOT EXISTS chatsync.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('applied', 'adopted')),
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
APPLIED = "SELECT version, outcome FROM chatsync.schema_migrations"
RECORD = """
INSERT INTO chatsync.schema_migrations (version, name, checksum, outcome)
VALUES (%(version)s, %(name)s, %(checksum)s, %(outcome)s)
"""
HAS_APP_TABLES = "SELECT to_regclass('public.chat_messages') IS NOT NULL"

_HEADER = re.compile(r"--\s*chatsync:\s*existing-deployments=(run|skip|opt-in)")


class MigrationError(Exception):
    """A migration could not be applied; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    policy: Policy

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    version: int
    name: str
    action: Literal["applied", "adopted", "left for --corrected-analytics"]


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("remote").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if not match:
            continue
        sql = entry.read_text()
        header = _HEADER.search(sql.split("\n", 1)[0])
        if not header:
            raise MigrationError(f"{entry.name}: first line must say existing-deployments=…")
        found.append(Migration(int(match[1]), match[2], sql, header[1]))  # type: ignore[arg-type]
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg.Connection, *, corrected_analytics: bool = False) -> list[Outcome]:
    """Apply what is pending; returns what was done, in order."""
    outcomes: list[Outcome] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(BOOTSTRAP)
        done: dict[int, str] = dict(conn.execute(APPLIED).fetchall())
        available = migrations()
        pending = [m for m in available if m.version not in done]
        existing = _is_existing_deployment(conn, done)
        opted_in = corrected_analytics or _opted_in_before(available, done)
        for m in pending:
            if existing and m.policy == "skip":
                action = "adopted"
            elif existing and m.policy == "opt-in" and not opted_in:
                outcomes.append(Outcome(m.version, m.name, "left for --corrected-analytics"))
                continue
            else:
                try:
                    with conn.transaction():
                        conn.execute(m.sql.encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} failed: {exc}"
                    ) from exc
                action = "applied"
            conn.execute(
                RECORD,
                {"version": m.version, "name": m.name, "checksum": m.checksum, "outcome": action},
            )
            outcomes.append(Outcome(m.version, m.name, action))  # type: ignore[arg-type]
    return outcomes


def _is_existing_deployment(conn: psycopg.Connection, done: dict[int, str]) -> bool:
    """The app's tables were there before chatsync: recorded so, or seen now."""
    if APP_SCHEMA_VERSION in done:
        return done[APP_SCHEMA_VERSION] == "adopted"
    return bool(scalar(conn, HAS_APP_TABLES))


def _opted_in_before(available: list[Migration], done: dict[int, str]) -> bool:
    """An opt-in migration was applied already (a `--corrected-analytics` run, or a new
    database, where every migration applies)."""
    opt_in = {m.version for m in available if m.policy == "opt-in"}
    return any(done.get(v) == "applied" for v in opt_in)
