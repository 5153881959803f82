"""The network and the server: the connection cut mid-batch (before and after the commit),
connections that hang, statement timeouts, and a daemon that loses PostgreSQL mid-sync.
Every failure is a transient error; the next sync (or the daemon by itself) catches up,
loses nothing and counts nothing twice.

Faults come from a loopback proxy (tests/faults_proxy.py), not from restarting the shared
PostgreSQL, which other tests use concurrently.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from daemon.engine import SyncEngine
from tests.support.daemons import DaemonProc, write_config
from tests.support.faults_proxy import FaultProxy
from tests.support.procs import wait_for
from tests.support.stores import (
    LONG,
    assert_converged,
    fill,
    local_dirty,
    new_user,
    random_edits,
    seed_from_env,
)

CUT_ROUNDS = 25 if LONG else 5
LOCK_MESSAGES = "LOCK TABLE public.chat_messages IN ACCESS EXCLUSIVE MODE"


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy() as p:
        yield p


def via(proxy: FaultProxy, dsn: str, **extra: str) -> str:
    return proxy.dsn(conninfo_to_dict(dsn), **extra)


def sync_once(store_path: Path, dsn: str, *, hook: Callable[[str, str], None] | None = None,
              batch_size: int = 20, stall_s: float = 120.0):
    engine = SyncEngine(store_path, dsn, batch_size=batch_size, on_phase=hook,
                        stall_timeout_s=stall_s)
    try:
        return engine.sync()
    finally:
        engine.close()


def at(phase: str, kind: str, n: int, action: Callable[[], object]) -> Callable[[str, str], None]:
    seen = 0

    def hook(p: str, k: str) -> None:
        nonlocal seen
        if (p, k) == (phase, kind):
            seen += 1
            if seen == n:
                action()

    return hook


@pytest.mark.parametrize("phase", ["sent", "committed"])
def test_connection_cut_mid_batch(
    phase: str, proxy: FaultProxy, store_path: Path, remote_dsn: str,
    remote: psycopg.Connection,
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=5, per_conversation=30)
    report = sync_once(store_path, via(proxy, remote_dsn),
                       hook=at(phase, "message", 3, proxy.cut))
    if phase == "sent":
        # cut before COMMIT: the batch rolls back, the sync reports a temporary error
        assert not report.ok and report.transient, report
    # (cut after the commit: the mark is local; the next batch meets the dead connection)
    assert not report.ok and report.transient, report
    assert "cannot reach" in (report.error or "") or "connection" in (report.error or "")
    again = sync_once(store_path, via(proxy, remote_dsn))
    assert again.ok, again.error
    assert_converged(store_path, remote, user)


def test_connection_cut_at_random_moments(
    proxy: FaultProxy, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    seed = seed_from_env()
    print(f"CHATSYNC_FAULT_SEED={seed}  ({CUT_ROUNDS} rounds)")
    rng = random.Random(seed)
    user = new_user(store_path)
    fill(store_path, user, conversations=20, per_conversation=40)
    failures = 0
    for round_no in range(CUT_ROUNDS):
        random_edits(store_path, rng, rng.randrange(10, 100), round_no)
        timer = threading.Timer(rng.uniform(0.02, 0.6), proxy.cut)
        timer.start()
        report = sync_once(store_path, via(proxy, remote_dsn), batch_size=25)
        timer.cancel()
        if not report.ok:
            failures += 1
            assert report.transient, report.error
    print(f"seed {seed}: {failures} of {CUT_ROUNDS} syncs cut")
    assert sync_once(store_path, via(proxy, remote_dsn)).ok
    assert_converged(store_path, remote, user)


def test_hung_connection_is_dropped_and_retried(
    proxy: FaultProxy, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=3, per_conversation=30)
    started = time.monotonic()
    report = sync_once(store_path, via(proxy, remote_dsn),
                       hook=at("read", "message", 2, proxy.hang), stall_s=2.0)
    assert not report.ok and report.transient, report
    assert time.monotonic() - started < 30, "the hung connection was not given up"
    proxy.heal()
    again = sync_once(store_path, via(proxy, remote_dsn))
    assert again.ok, again.error
    assert_converged(store_path, remote, user)


def test_statement_timeout_is_transient(
    store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=2, per_conversation=10)
    slow_dsn = remote_dsn + " options='-c statement_timeout=300'"
    with psycopg.connect(remote_dsn) as locker:  # another session holding a table lock
        locker.execute(LOCK_MESSAGES)
        report = sync_once(store_path, slow_dsn)
        assert not report.ok and report.transient, report
        assert "statement timeout" in (report.error or ""), report.error
        locker.rollback()
    again = sync_once(store_path, slow_dsn)
    assert again.ok, again.error
    assert_converged(store_path, remote, user)


def test_daemon_loses_the_server_mid_sync_and_catches_up_by_itself(
    proxy: FaultProxy, tmp_path: Path, store_path: Path, remote_dsn: str,
    remote: psycopg.Connection,
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=30, per_conversation=40)
    password_dsn = via(proxy, remote_dsn, password="s3cret-pw-do-not-log")
    config, sock = write_config(tmp_path, store=store_path, dsn=password_dsn, batch_size=20,
                                retry_max_seconds=2)
    # The cut comes while the start-up sync is under way: first messages have arrived.
    d = DaemonProc(config, sock, tmp_path / "daemon.log", watch="off").start(wait=False)
    try:
        wait_for(lambda: remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] > 0,
                 30, "the first messages to arrive")
        proxy.refuse()
        proxy.cut()
        wait_for(lambda: d.status()["daemon"]["backoff"]["failures"] >= 1, 30,
                 "the daemon to notice")
        status = d.status()
        assert status["daemon"]["state"] in ("offline", "backing off"), status["daemon"]
        assert status["pending"]["messages"] > 0
        time.sleep(1.0)
        proxy.heal()
        wait_for(lambda: local_dirty(store_path) == 0, 60, "the daemon to catch up")
        wait_for(lambda: d.status()["daemon"]["state"] == "idle", 30, "idle")
        text = d.log() + str(d.status()) + d.get_text("/metrics")
        assert "s3cret-pw-do-not-log" not in text
        assert d.stop() == 0
    finally:
        d.close()
    assert_converged(store_path, remote, user)
