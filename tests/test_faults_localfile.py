"""The local file: a desktop client holding a long write transaction, and the store file
removed or replaced under a running daemon.

A busy store is a temporary error (the remote commit is kept; the rows stay dirty and are
re-sent as no-ops), never a crash. A store that is no longer the file the daemon opened is
a clear, permanent error, not a silent divergence.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
import pytest

from daemon.engine import SyncEngine
from localstore import Store, connection
from tests.support.daemons import DaemonProc, cli, write_config
from tests.support.procs import wait_for
from tests.support.stores import assert_converged, fill, local_dirty, new_user, plain

HOLD_S = 7.0  # longer than the store's 5 s busy timeout


def hold_write_lock(store_path: Path, seconds: float, started: threading.Event) -> None:
    conn = plain(store_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE conversations SET title = title || '!' WHERE rowid = 1")
        started.set()
        threading.Event().wait(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_engine_reports_a_busy_store_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, store_path: Path, remote_dsn: str,
    remote: psycopg.Connection,
) -> None:
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_MS", 300)
    user = new_user(store_path)
    fill(store_path, user, conversations=3, per_conversation=20)
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(store_path, 2.0, started))
    holder.start()
    started.wait(5)
    engine = SyncEngine(store_path, remote_dsn, batch_size=10)
    try:
        report = engine.sync()  # must not raise sqlite3.OperationalError
        assert not report.ok and report.transient, report
        assert "busy" in (report.error or ""), report.error
        holder.join()
        again = engine.sync()
        assert again.ok, again.error
    finally:
        engine.close()
    assert_converged(store_path, remote, user)


def test_daemon_waits_out_a_long_write_transaction(
    tmp_path: Path, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=2, per_conversation=10)
    config, sock = write_config(tmp_path, store=store_path, dsn=remote_dsn,
                                retry_max_seconds=2)
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(store_path, HOLD_S, started))
    holder.start()
    started.wait(5)
    d = DaemonProc(config, sock, tmp_path / "daemon.log", watch="off").start()
    try:
        holder.join()
        fill(store_path, user, conversations=1, per_conversation=5, tag="after")
        assert cli(config, "sync-now").returncode == 0
        wait_for(lambda: local_dirty(store_path) == 0, 30, "the daemon to catch up")
        assert d.proc is not None and d.proc.poll() is None, d.log()
        assert d.stop() == 0
    finally:
        d.close()
    assert_converged(store_path, remote, user)


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_store_removed_or_replaced_under_the_daemon_is_a_clear_error(
    how: str, tmp_path: Path, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=1, per_conversation=3)
    config, sock = write_config(tmp_path, store=store_path, dsn=remote_dsn)
    d = DaemonProc(config, sock, tmp_path / "daemon.log", watch="off").start()
    try:
        assert cli(config, "sync-now").returncode == 0
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_path}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            # A restored backup or another account's file now sits at the path.
            other = tmp_path / "other.db"
            with Store(other) as s:
                s.sign_in(user)
                s.create_conversation("written to the new file")
            os.replace(other, store_path)
        result = cli(config, "sync-now")
        assert result.returncode != 0
        # A removed file may already be re-created empty by the time the daemon looks (its
        # status page opens the store path), so "removed" may read as "replaced".
        said = ("was removed", "was replaced") if how == "removed" else ("was replaced",)
        assert any(s in result.stderr for s in said), result.stderr
        assert "restart chatsync" in result.stderr
        error = d.status()["daemon"]["last_sync"]["error"] or ""
        assert any(s in error for s in said), error
        assert d.proc is not None and d.proc.poll() is None, "the daemon died"
        assert d.stop() == 0
    finally:
        d.close()
