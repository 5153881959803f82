"""Crashes over HTTP: `chatsync sync-now` configured with `remote.url` (no DSN on the
device) killed with SIGKILL at every named phase of a message batch, and the sync server
killed under a device mid-batch. After a restart and a final sync, local equals remote, no
edit is lost and usage equals the truth."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from pathlib import Path

import psycopg
import pytest

from daemon.report import Outcome
from localstore import Store
from tests.support.daemons import DaemonProc, child_env, cli, spawn
from tests.support.procs import wait_for
from tests.support.servers import ServerProc, hs_token
from tests.support.stores import assert_converged, fill, new_user, random_edits

PHASES = ("read", "sent", "committed", "marked")


def http_device(tmp_path: Path, store_path: Path, url: str, *, batch_size: int,
                **sync: object) -> tuple[str, Path]:
    """A signed-in store whose only credential is its user's access token."""
    user = new_user(store_path)
    with Store(store_path) as store, store.transaction() as conn:
        conn.execute("UPDATE auth_session SET access_token = ?, expires_at = ?",
                     (hs_token(user), int(time.time()) + 3600))
    config = tmp_path / "device.toml"
    config.write_text("\n".join([
        "[local]", f"path = {json.dumps(str(store_path))}",
        "[remote]", f"url = {json.dumps(url)}",
        "[sync]", f"batch_size = {batch_size}",
        *(f"{k} = {json.dumps(v)}" for k, v in sync.items()),
        "[daemon]", f"socket = {json.dumps(str(tmp_path / 'ctl.sock'))}",
    ]) + "\n")
    return user, config


@pytest.mark.parametrize("phase", PHASES)
def test_sync_now_over_http_killed_at_every_phase(
    phase: str, tmp_path: Path, store_path: Path, server: ServerProc,
    remote: psycopg.Connection,
) -> None:
    user, config = http_device(tmp_path, store_path, server.url, batch_size=5)
    fill(store_path, user, conversations=3, per_conversation=10)
    killed = cli(config, "sync-now", env=child_env(CHATSYNC_FAULT=f"{phase}:message:2"))
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    random_edits(store_path, random.Random(3), 15, round_no=1)
    final = cli(config, "sync-now", "--json")
    assert final.returncode == 0, final.stderr
    assert_converged(store_path, remote, user)


def test_server_killed_mid_batch_then_back(
    tmp_path: Path, store_path: Path, server: ServerProc, remote: psycopg.Connection
) -> None:
    user, config = http_device(tmp_path, store_path, server.url, batch_size=400)
    fill(store_path, user, conversations=80, per_conversation=250)
    proc = spawn(config, "sync-now", "--json", log=tmp_path / "sync.log")
    # Killed once the first message batch has reached the remote, so mid-way through the
    # 20,000 messages (about 50 batches) however fast the push is.
    wait_for(lambda: remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
             >= 400, 60, "the first message batch on the remote")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    code = proc.wait(120)
    log = (tmp_path / "sync.log").read_text()
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] < 20_000
    # Mid-way: a temporary failure, in a sentence.
    assert code == 1, log
    assert "sync server" in log and "temporary" in log and "Traceback" not in log, log
    outcome = re.search(r'"outcome": "(\w+)"', log)
    assert outcome and Outcome(outcome[1]) in (Outcome.UNREACHABLE, Outcome.TRANSIENT_FAILURE)
    server.start()
    final = cli(config, "sync-now")
    assert final.returncode == 0, final.stderr
    assert_converged(store_path, remote, user)


def test_daemon_over_http_syncs_edits_and_tells_a_refused_session(
    tmp_path: Path, store_path: Path, server: ServerProc, remote: psycopg.Connection
) -> None:
    """`chatsync run` with only `remote.url`: edits reach the server; when the session is
    refused for good, status says "signed out" and what to do, and the edits are kept."""
    user, config = http_device(tmp_path, store_path, server.url, batch_size=100)
    fill(store_path, user, conversations=1, per_conversation=4)
    d = DaemonProc(config, tmp_path / "ctl.sock", tmp_path / "daemon.log", watch="auto").start()
    try:
        wait_for(lambda: remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
                 == 4, 30, "the start-up sync through the server")
        # The access token expires and there is no refresh token (nor auth server): the
        # device is signed out, but keeps what it writes.
        with Store(store_path) as store, store.transaction() as conn:
            conn.execute("UPDATE auth_session SET expires_at = ?", (int(time.time()) - 5,))
        fill(store_path, user, conversations=1, per_conversation=2, tag="late")
        r = cli(config, "sync-now")
        assert r.returncode == 1 and "sign in again" in r.stderr, r.stderr
        status = d.status()
        assert status["daemon"]["state"] == "signed out"
        assert status["daemon"]["last_sync"]["outcome"] == Outcome.SIGNED_OUT
        assert status["pending"]["messages"] == 2
        plain_status = cli(config, "status")
        assert "Sign in again" in plain_status.stdout, plain_status.stdout
        with Store(store_path) as store:
            token = store.conn.execute("SELECT access_token FROM auth_session").fetchone()[0]
        shown = (json.dumps(status) + d.get_text("/metrics") + plain_status.stdout
                 + plain_status.stderr + r.stdout + r.stderr)
        assert token not in shown  # never in status, metrics or errors
        assert d.stop() == 0
    finally:
        d.close()
    log = d.log()
    assert "Traceback" not in log and token not in log


def test_daemon_over_http_gets_another_devices_changes_live(
    tmp_path: Path, store_path: Path, server: ServerProc, remote: psycopg.Connection
) -> None:
    """With no local trigger (no file watching, an hour's schedule), a message the web app
    writes reaches the store within a second or two; the device's own push wakes nothing."""
    user, config = http_device(tmp_path, store_path, server.url, batch_size=100,
                               interval_seconds=3600)
    fill(store_path, user, conversations=1, per_conversation=2)
    d = DaemonProc(config, tmp_path / "ctl.sock", tmp_path / "daemon.log", watch="off").start()
    try:
        wait_for(lambda: (d.status()["daemon"]["live"] or {}).get("state") == "live", 30,
                 "the live pull to be open")
        assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 2
        # Its own push (through sync-now) is not news to it.
        fill(store_path, user, conversations=1, per_conversation=1, tag="own")
        assert cli(config, "sync-now").returncode == 0
        time.sleep(1.5)
        assert d.status()["daemon"]["live"]["wakeups"] == 0
        # The web app writes a message: it arrives without any local trigger.
        started = time.monotonic()
        remote.execute(
            "INSERT INTO chat_messages (id, session_id, role, content) "
            "VALUES ('msg_web', 'conv_0', 'assistant', 'written by the web app')")
        with Store(store_path) as store:
            wait_for(lambda: store.conn.execute(
                "SELECT 1 FROM messages WHERE id = 'msg_web'").fetchone() is not None,
                10, "the web app's message in the store")
        elapsed = time.monotonic() - started
        assert elapsed < 3, elapsed
        live = d.status()["daemon"]["live"]
        assert live["wakeups"] == 1 and live["state"] == "live"
        assert d.stop() == 0
    finally:
        d.close()


def test_devices_reconnect_after_a_server_restart_and_converge(
    tmp_path: Path, store_path: Path, server: ServerProc, remote: psycopg.Connection
) -> None:
    """A connected daemon sees the server go away ("reconnecting", with back-off), comes
    back live on its own when it returns, and then receives what was written meanwhile."""
    user, config = http_device(tmp_path, store_path, server.url, batch_size=100,
                               interval_seconds=3600)
    fill(store_path, user, conversations=1, per_conversation=1)
    d = DaemonProc(config, tmp_path / "ctl.sock", tmp_path / "daemon.log", watch="off").start()
    try:
        def live_state() -> str:
            return str((d.status()["daemon"]["live"] or {}).get("state"))

        wait_for(lambda: live_state() == "live", 30, "the live pull to be open")
        server.stop()
        wait_for(lambda: live_state() == "reconnecting", 30, "the listener to notice")
        remote.execute("INSERT INTO chat_messages (id, session_id, role, content) "
                       "VALUES ('msg_meanwhile', 'conv_0', 'user', 'written while down')")
        server.start()
        with Store(store_path) as store:
            wait_for(lambda: store.conn.execute(
                "SELECT 1 FROM messages WHERE id = 'msg_meanwhile'").fetchone() is not None,
                60, "the change made while the server was down")
        wait_for(lambda: live_state() == "live", 30, "the listener to be live again")
        assert d.stop() == 0
    finally:
        d.close()
    assert "Traceback" not in d.log()
