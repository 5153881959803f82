"""Opening a store file: pragmas, text decoding and schema migrations."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

from localstore.errors import SchemaTooNew

# user_version -> the script that brings a store from the version before it.
MIGRATIONS: dict[int, str] = {
    1: "schema.sql", 2: "pull.sql", 3: "fidelity.sql", 4: "session.sql", 5: "inflight.sql",
}
SCHEMA_VERSION = max(MIGRATIONS)

BUSY_TIMEOUT_MS = 5000


def _decode(raw: bytes) -> str:
    # Another client may have written bytes that are not UTF-8. Keep them readable (as lone
    # surrogates) instead of failing the whole query; the sync engine quarantines such rows.
    return raw.decode("utf-8", "surrogateescape")


def connect(path: str | Path, *, migrate: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) the store at *path*, migrated to the current schema."""
    path = Path(path)
    _owner_only(path)
    # isolation_level=None: we issue BEGIN ourselves, so a transaction lasts exactly as long
    # as the code says and a reader never holds a lock by accident.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.text_factory = _decode
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    if migrate:
        _migrate(conn, path)
    return conn


def _owner_only(path: Path) -> None:
    """Create the store's folder and file readable by their owner only (chats are private).

    SQLite creates the `-wal` and `-shm` files with the main file's mode, so they follow.
    A store another program created with a wider mode is narrowed when we own it.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            st = file.stat()
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                file.chmod(stat.S_IMODE(st.st_mode) & 0o700)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} has schema version {version}, but this chatsync knows only up to "
            f"{SCHEMA_VERSION}; upgrade chatsync to open it"
        )
    if version == SCHEMA_VERSION:
        return
    # Only to migrate: it imports tempfile and more, which opening a store need not pay.
    from importlib import resources

    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = schema_version(conn)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            script = resources.files("localstore").joinpath(MIGRATIONS[target]).read_text()
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on complete statements instead.
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current)
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        statements.append(current)
    return statements
