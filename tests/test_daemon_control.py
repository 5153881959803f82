"""The daemon as a service: sync-now, status through the socket, back-off, the store lock,
config errors and secrets, systemd readiness. Real processes, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from localstore import Store
from tests.support import ALICE
from tests.support.daemons import DaemonProc
from tests.support.faults_proxy import FaultProxy
from tests.support.pg import unreachable, with_params
from tests.support.procs import ROOT, wait_for

Spawn = Callable[..., DaemonProc]




def tcp_port(dsn: str) -> int:
    params = conninfo_to_dict(dsn)
    host = params.get("host", "")
    if not host or host.startswith("/"):
        pytest.skip("the test server is on a Unix socket; the proxy needs TCP")
    return int(params.get("port", 5432))


def messages_on_remote(remote: psycopg.Connection) -> int:
    return remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0]


def test_sync_now_asks_the_daemon_falls_back_in_process_and_fails_clearly(
    spawn: Spawn, store: Store, remote: psycopg.Connection, remote_dsn: str
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("manual")
    daemon = spawn(watch="off", interval_seconds=3600).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")
    store.add_message(conv.id, "user", "sync me now")

    done = daemon.cli("sync-now")
    assert done.returncode == 0, done.stderr
    assert "sent 1 conversations, 1 messages" in done.stdout and "by the daemon" in done.stdout
    assert messages_on_remote(remote) == 1
    assert daemon.syncs()["by_reason"]["manual"] == 1
    assert daemon.stop() == 0

    store.add_message(conv.id, "user", "no daemon now")
    done = daemon.cli("sync-now")
    assert done.returncode == 0, done.stderr
    assert "in-process" in done.stdout and messages_on_remote(remote) == 2

    store.add_message(conv.id, "user", "nowhere to go")
    offline = spawn(dsn=unreachable(remote_dsn), watch="off", interval_seconds=3600)
    failed = offline.cli("sync-now")  # no daemon for this config: in-process
    assert failed.returncode == 1
    assert "cannot reach the remote database" in failed.stderr and "temporary" in failed.stderr
    offline.start()
    failed = offline.cli("sync-now")  # through the daemon, past its back-off
    assert failed.returncode == 1
    assert "cannot reach the remote database" in failed.stderr
    assert offline.syncs()["by_reason"]["manual"] == 1


def test_postgres_outage_backs_off_shows_why_and_catches_up_without_restart(
    spawn: Spawn, store: Store, remote: psycopg.Connection, remote_dsn: str
) -> None:
    proxy = FaultProxy(tcp_port(remote_dsn))
    store.sign_in(ALICE)
    conv = store.create_conversation("outage")
    daemon = spawn(dsn=with_params(remote_dsn, host="127.0.0.1", port=proxy.port),
                   interval_seconds=3600, debounce_ms=100, retry_max_seconds=2).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")

    proxy.refuse()  # PostgreSQL goes away: open connections reset, new ones refused
    proxy.cut()
    store.add_message(conv.id, "user", "written during the outage")
    status = wait_for(lambda: (s := daemon.status())["daemon"]["backoff"]["failures"] >= 2
                      and s, 20, "failed syncs backing off")
    d = status["daemon"]
    assert d["state"] in ("offline", "backing off")
    assert "cannot reach the remote database" in d["last_sync"]["error"]
    assert d["last_sync"]["transient"] is True
    assert status["pending"]["messages"] == 1
    # The daemon may be inside a retry at any given moment: ask until it is between two.
    text = wait_for(lambda: (t := " ".join(daemon.cli("status").stdout.split()))  # unwrap
                    and "usually passes by itself" in t and t, 20, "status explaining the wait")
    assert "retries" in text
    assert daemon.proc is not None and daemon.proc.poll() is None

    proxy.heal()
    wait_for(lambda: messages_on_remote(remote) == 1, 20, "catching up after the outage")
    wait_for(lambda: daemon.status()["daemon"]["state"] == "idle", 10, "idle again")
    assert daemon.status()["pending"]["messages"] == 0
    assert daemon.syncs()["by_reason"].get("manual") is None  # no one had to ask
    proxy.close()


def test_second_daemon_on_the_same_store_is_refused_and_the_first_carries_on(
    spawn: Spawn, store: Store, remote: psycopg.Connection
) -> None:
    store.sign_in(ALICE)
    conv = store.create_conversation("one daemon")
    first = spawn(interval_seconds=3600, debounce_ms=100).start()
    wait_for(lambda: first.idle_after(1), what="the start-up sync")
    second = spawn(interval_seconds=3600).start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(30) == 1
    assert first.proc is not None
    assert "already running" in second.log() and f"pid {first.proc.pid}" in second.log()

    store.add_message(conv.id, "user", "the first one syncs this")
    wait_for(lambda: messages_on_remote(remote) == 1, 10, "the first daemon's sync")
    assert first.get("/health").json()["ok"] is True


def test_config_errors_name_the_key_and_the_password_never_shows(
    spawn: Spawn, tmp_path: Path, store: Store, remote_dsn: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sync]\ndebounce_ms = "soon"\ndebounse = 3\n')
    run = subprocess.run([sys.executable, "-m", "daemon", "--config", str(bad), "run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "sync.debounce_ms" in run.stderr and "sync.debounse: unknown key" in run.stderr
    env_bad = subprocess.run(
        [sys.executable, "-m", "daemon", "status"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "CHATSYNC_SYNC_INTERVAL_SECONDS": "often",
                         "CHATSYNC_CONFIG": str(bad.with_name("none.toml"))},
    )
    assert env_bad.returncode == 2 and "does not exist" in env_bad.stderr

    secret = "Sup3r-S3cret-pw"
    store.sign_in(ALICE)
    conv = store.create_conversation("secrets")
    store.add_message(conv.id, "user", "hi")
    other = tmp_path / "other" / "s.db"
    with Store(other) as offline_store:
        offline_store.sign_in(ALICE)
        offline_store.add_message(offline_store.create_conversation("x").id, "user", "hi")
    ok = spawn(dsn=with_params(remote_dsn, password=secret), interval_seconds=3600).start()
    down = spawn(dsn=with_params(unreachable(remote_dsn), password=secret), store=other,
                 interval_seconds=3600).start()
    outputs = []
    for daemon, commands in ((ok, [["status"], ["sync-now", "--json"]]),
                             (down, [["status"], ["status", "--json"], ["sync-now"]])):
        wait_for(lambda d=daemon: d.idle_after(1), what="the start-up sync")
        mode = stat.S_IMODE(os.stat(daemon.socket).st_mode)
        assert mode == 0o600, oct(mode)
        for args in commands:
            result = daemon.cli(*args)
            outputs += [result.stdout, result.stderr]
        outputs.append(daemon.get("/metrics").text)
        assert daemon.stop() == 0
        outputs.append(daemon.log())
    outputs.append(down.cli("status").stdout)  # from the store, daemon down
    assert any("password=****" in o for o in outputs)
    assert any("cannot reach" in o for o in outputs)
    leaks = [o for o in outputs if secret in o]
    assert not leaks, leaks[0]


def test_env_override_with_a_wrong_type_names_the_variable(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "daemon", "run"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "CHATSYNC_SYNC_INTERVAL_SECONDS": "often",
                         "CHATSYNC_CONFIG": "", "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert run.returncode == 2
    assert "CHATSYNC_SYNC_INTERVAL_SECONDS" in run.stderr


def test_systemd_readiness_and_stopping_are_notified(
    spawn: Spawn, store: Store, tmp_path: Path
) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(address)
        sink.settimeout(30)
        daemon = spawn(env={"NOTIFY_SOCKET": address}, interval_seconds=3600).start()
        messages = [sink.recv(4096).decode()]
        assert "READY=1" in messages[0]
        daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        while "STOPPING=1" not in messages[-1]:
            messages.append(sink.recv(4096).decode())
        assert daemon.proc.wait(30) == 0  # type: ignore[union-attr]
    unit = daemon.cli("install-service", "--print").stdout
    assert "Type=notify" in unit and "-m daemon --config" in unit and unit.rstrip().endswith(
        "WantedBy=default.target")
