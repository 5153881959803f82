"""The CLI as a person uses it: real `chatsync` processes, a real store and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.support import ALICE

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def chatsync(tmp_path: Path, remote_dsn: str) -> Runner:
    env = {
        **os.environ,
        "CHATSYNC_LOCAL_PATH": str(tmp_path / "store.db"),
        "CHATSYNC_REMOTE_DSN": remote_dsn,
        "CHATSYNC_DAEMON_SOCKET": str(tmp_path / "no-daemon.sock"),
        "CHATSYNC_CONFIG": str(tmp_path / "absent-is-fine.toml"),
    }
    (tmp_path / "absent-is-fine.toml").write_text("")

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "daemon", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return run


def test_quickstart_from_the_shell(chatsync: Runner, remote: psycopg.Connection) -> None:
    assert "store ready" in chatsync("init").stdout
    conv = chatsync("new-conversation", "Trip planning").stdout.strip()
    assert conv.startswith("conv_")
    chatsync("add-message", conv, "Where should we go?", "--input-tokens", "12")
    chatsync("add-message", conv, "Lisbon.", "--role", "assistant", "--model", "m1",
             "--output-tokens", "30")
    chatsync("sign-in", ALICE, "--email", "alice@example.com")

    before = json.loads(chatsync("status", "--json").stdout)
    assert before["signed_in"] == ALICE

    first = json.loads(chatsync("sync-now", "--json").stdout)
    assert first["ok"] and first["claimed"] == 1
    assert (first["conversations"]["sent"], first["messages"]["sent"]) == (1, 2)
    second = chatsync("sync-now").stdout
    assert "nothing to send" in second

    after = json.loads(chatsync("status", "--json").stdout)
    assert after["pending"] == {"conversations": 0, "messages": 0, "deletions": 0,
                                "oldest_age_s": None}
    row = remote.execute("SELECT messages_sent, messages_received, total_tokens "
                         "FROM user_usage_daily").fetchone()
    assert row == (1, 1, 42)


def test_bad_input_is_one_clear_line_not_a_traceback(chatsync: Runner) -> None:
    conv = chatsync("new-conversation", "t").stdout.strip()
    done = chatsync("add-message", conv, "x", "--input-tokens", "-3", ok=False)
    assert done.returncode == 1
    assert "tokens must be a whole number from 0" in done.stderr
    assert "Traceback" not in done.stderr

    done = chatsync("add-message", "conv_nope", "x", ok=False)
    assert done.returncode == 1 and "no conversation" in done.stderr

    done = chatsync("sign-in", "not-a-uuid", ok=False)
    assert "auth_session.user_id must be a lowercase UUID" in done.stderr


def test_config_errors_exit_2_naming_the_key(chatsync: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[sync]\nbatch_size = 'ten'\n")
    done = chatsync("--config", str(bad), "status", ok=False)
    assert done.returncode == 2
    assert "sync.batch_size" in done.stderr and "Traceback" not in done.stderr


def test_unreachable_remote_fails_clearly_without_the_password(
    chatsync: Runner, tmp_path: Path
) -> None:
    chatsync("sign-in", ALICE)
    chatsync("new-conversation", "pending")
    cfg = tmp_path / "down.toml"
    cfg.write_text('[remote]\ndsn = "postgresql://someone:hunter2@127.0.0.1:1/app"\n')
    env_free = ["env", "-u", "CHATSYNC_REMOTE_DSN"]
    done = subprocess.run(
        [*env_free, sys.executable, "-m", "daemon", "--config", str(cfg), "sync-now"],
        env={k: v for k, v in os.environ.items() if k != "CHATSYNC_REMOTE_DSN"}
        | {"CHATSYNC_LOCAL_PATH": str(tmp_path / "store.db"),
           "CHATSYNC_DAEMON_SOCKET": str(tmp_path / "no.sock")},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach the remote database" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_is_idempotent(chatsync: Runner) -> None:
    # the fixture's database is fully migrated already
    assert "up to date" in chatsync("migrate").stdout


def test_exit_statuses_are_the_documented_ones(chatsync: Runner, tmp_path: Path) -> None:
    """0 done, 1 failed (one line saying why), 2 bad usage or configuration; never a
    traceback, never the DSN's password."""
    for args, expected in (
        (["sync-now", "--bogus"], "No such option"),
        (["sign-in"], "give USER_ID"),
        (["run", "--watch", "sometimes"], "Invalid value for '--watch'"),
    ):
        done = chatsync(*args, ok=False)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr

    done = subprocess.run(
        [sys.executable, "-m", "daemon", "migrate"], capture_output=True, text=True,
        timeout=60, env={**os.environ, "CHATSYNC_CONFIG": str(tmp_path / "absent-is-fine.toml"),
                         "CHATSYNC_REMOTE_DSN": "host=db.example.com password='hunter2"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("chatsync: remote.dsn is not a valid PostgreSQL")
    assert "hunter2" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_interrupted_exits_130_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "CHATSYNC_LOCAL_PATH": str(tmp_path / "store.db"),
           "CHATSYNC_CONFIG": str(tmp_path / "none.toml"),
           "CHATSYNC_DAEMON_SOCKET": str(tmp_path / "no.sock"),
           "CHATSYNC_REMOTE_AUTH_URL": "http://127.0.0.1:1/auth/v1",
           "CHATSYNC_REMOTE_ANON_KEY": "anon"}
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "sign-in", "--email", "a@example.com",
         "--password-stdin"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # Interrupt it once it waits for the password (a read on standard input, fd 0).
        syscall = Path(f"/proc/{proc.pid}/syscall")
        deadline = time.monotonic() + 30
        while not syscall.read_text().startswith("0 0x0 "):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
