"""Crashes: `chatsync sync-now` and `chatsync run` killed with SIGKILL at every named phase
of a sync and at random moments of large syncs. After each restart and a final sync, local
equals remote, no edit is lost and usage equals the truth.

Random rounds print their seed; replay one with `CHATSYNC_FAULT_SEED=<seed>`. The default
run is short; `CHATSYNC_LONG=1` runs many more rounds.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import psycopg
import pytest

from daemon.engine import SyncEngine
from tests.support.daemons import DaemonProc, child_env, cli, spawn, write_config
from tests.support.procs import wait_for
from tests.support.stores import (
    LONG,
    assert_converged,
    fill,
    local_dirty,
    new_user,
    plain,
    random_edits,
    seed_from_env,
)

PHASES = ("read", "sent", "committed", "marked")
KINDS = ("conversation", "message", "deletion")
RANDOM_ROUNDS = 20 if LONG else 4
DAEMON_ROUNDS = 10 if LONG else 2


def first_sync(store_path: Path, dsn: str) -> None:
    engine = SyncEngine(store_path, dsn, batch_size=50)
    try:
        assert engine.sync().ok
    finally:
        engine.close()


# Deletions have no "sent" phase: push_deletions runs one statement per kind and commits.
# The default run kills at every phase of a message batch and at the commit of the other
# kinds; CHATSYNC_LONG=1 runs the whole matrix.
PHASE_KINDS = [(p, k) for p in PHASES for k in KINDS if (p, k) != ("sent", "deletion")
               and (LONG or k == "message" or p == "committed")]


@pytest.mark.parametrize(("phase", "kind"), PHASE_KINDS)
def test_sync_now_killed_at_every_phase(
    phase: str, kind: str, tmp_path: Path, store_path: Path, remote_dsn: str,
    remote: psycopg.Connection,
) -> None:
    user = new_user(store_path)
    fill(store_path, user, conversations=4, per_conversation=12)
    first_sync(store_path, remote_dsn)
    # Pending work of every kind: new and edited rows, and deletions of pushed rows.
    random_edits(store_path, random.Random(7), 40, round_no=1)
    fill(store_path, user, conversations=2, per_conversation=12, tag="b")
    conn = plain(store_path)
    conn.execute("DELETE FROM messages WHERE id IN ('msg_0_1', 'msg_1_2')")
    conn.execute("DELETE FROM conversations WHERE id = 'conv_3'")
    conn.commit()
    conn.close()

    config, _ = write_config(tmp_path, store=store_path, dsn=remote_dsn, batch_size=5)
    n = 2 if kind == "message" else 1
    killed = cli(config, "sync-now", env=child_env(CHATSYNC_FAULT=f"{phase}:{kind}:{n}"))
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)

    # The client keeps writing while the daemon is down.
    random_edits(store_path, random.Random(8), 10, round_no=2)
    final = cli(config, "sync-now", "--json")
    assert final.returncode == 0, final.stderr
    assert_converged(store_path, remote, user)


def test_sync_now_killed_at_random_moments_of_a_large_sync(
    tmp_path: Path, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    seed = seed_from_env()
    print(f"CHATSYNC_FAULT_SEED={seed}  ({RANDOM_ROUNDS} rounds)")
    rng = random.Random(seed)
    user = new_user(store_path)
    fill(store_path, user, conversations=30, per_conversation=60)
    config, _ = write_config(tmp_path, store=store_path, dsn=remote_dsn, batch_size=40)
    kills = 0
    for round_no in range(RANDOM_ROUNDS):
        if round_no:
            random_edits(store_path, rng, rng.randrange(20, 200), round_no)
            # Every other round, forget acknowledgements, as a lost mark would.
            if rng.random() < 0.3:
                conn = plain(store_path)
                conn.execute("UPDATE messages SET synced_rev = 0 WHERE rev % 3 = 0")
                conn.commit()
                conn.close()
        proc = spawn(config, "sync-now", log=tmp_path / "sync-now.log")
        time.sleep(rng.uniform(0.4, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        code = proc.wait(60)
        assert code in (0, -signal.SIGKILL), (tmp_path / "sync-now.log").read_text()
    print(f"seed {seed}: {kills} of {RANDOM_ROUNDS} syncs killed mid-way")
    final = cli(config, "sync-now")
    assert final.returncode == 0, final.stderr
    assert_converged(store_path, remote, user)


def test_daemon_killed_at_a_phase_and_at_random_moments(
    tmp_path: Path, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    seed = seed_from_env()
    print(f"CHATSYNC_FAULT_SEED={seed}  ({DAEMON_ROUNDS} daemon rounds)")
    rng = random.Random(seed)
    user = new_user(store_path)
    fill(store_path, user, conversations=20, per_conversation=50)
    config, sock = write_config(tmp_path, store=store_path, dsn=remote_dsn, batch_size=40)
    log = tmp_path / "daemon.log"

    # At a named phase: the daemon's start-up sync dies after its 3rd message commit.
    faulty = DaemonProc(config, sock, log, watch="off",
                        env={"CHATSYNC_FAULT": "committed:message:3"})
    faulty.start(wait=False)
    assert faulty.proc is not None
    assert faulty.proc.wait(60) == -signal.SIGKILL, faulty.log()

    # At random moments: start, let it sync for a while, kill -9, edit, again.
    for round_no in range(DAEMON_ROUNDS):
        random_edits(store_path, rng, rng.randrange(20, 150), round_no + 10)
        d = DaemonProc(config, sock, log, watch="off").start()
        time.sleep(rng.uniform(0.0, 1.5))
        d.kill()

    d = DaemonProc(config, sock, log, watch="off").start()
    try:
        wait_for(lambda: d.status()["daemon"]["syncs"]["total"] >= 1
                 and d.status()["daemon"]["state"] == "idle", 60, "the start-up sync")
        assert local_dirty(store_path) == 0, d.log()
        assert d.stop() == 0
    finally:
        d.close()
    assert_converged(store_path, remote, user)
