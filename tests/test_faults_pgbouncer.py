"""A full sync through PgBouncer in transaction mode, as most hosted PostgreSQL puts in front:
first sync, edit sync, no-op sync, and a crash between the remote commit and the local mark
followed by a re-send. Each transaction may land on a different server connection, so any
session state or server-side prepared statement would break here.

PgBouncer (Debian package `pgbouncer`, installed by .ci/run) is started by the test on a
free loopback port with `auth_type = trust`. It refuses to run as root, so as root it is
started with `-u postgres` (it drops privileges itself) from a directory that user can read.
Without the binary the test is skipped with a loud reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from daemon.engine import SyncEngine
from tests.support.daemons import free_port, wait_for
from tests.support.stores import assert_converged, fill, new_user, plain

XMINS = "SELECT id, xmin::text FROM public.chat_messages UNION ALL " \
        "SELECT id, xmin::text FROM public.chat_sessions ORDER BY 1"
INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
max_client_conn = 100
default_pool_size = 4
ignore_startup_parameters = extra_float_digits,options
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
admin_users = postgres
"""


@pytest.fixture
def bouncer(admin_dsn: str) -> Iterator[int]:
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if binary is None:
        pytest.skip("PGBOUNCER NOT INSTALLED: the transaction-pooler test did not run "
                    "(apt-get install -y pgbouncer; .ci/run does it)")
    params = conninfo_to_dict(admin_dsn)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="csf-pgb-"))
    (workdir / "userlist.txt").write_text(f'"{params.get("user", "postgres")}" ""\n')
    (workdir / "pgbouncer.ini").write_text(INI.format(
        host=params.get("host", "127.0.0.1"), port=params.get("port", 5432), listen=port,
        dir=workdir))
    cmd = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            pytest.skip("PGBOUNCER refuses to run as root and there is no postgres user")
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
        for f in workdir.iterdir():
            os.chown(f, pw.pw_uid, pw.pw_gid)
        cmd[1:1] = ["-u", user]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"pgbouncer exited {proc.returncode}: {out}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 15, "pgbouncer to listen")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


class Crash(BaseException):
    pass


def test_full_sync_through_pgbouncer_transaction_mode(
    bouncer: int, store_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    params = conninfo_to_dict(remote_dsn)
    pooled = make_conninfo(**{**params, "host": "127.0.0.1", "port": str(bouncer)})
    user = new_user(store_path)
    fill(store_path, user, conversations=8, per_conversation=25)

    def sync(hook=None):
        engine = SyncEngine(store_path, pooled, batch_size=30, on_phase=hook)
        try:
            return engine.sync()
        finally:
            engine.close()

    first = sync()
    assert first.ok, first.error
    assert (first.conversations.sent, first.messages.sent) == (8, 200)
    assert_converged(store_path, remote, user)

    conn = plain(store_path)
    conn.execute("UPDATE messages SET content = 'edited via pooler' WHERE id = 'msg_3_7'")
    conn.close()
    edit = sync()
    assert edit.ok and edit.messages.sent == 1 and edit.messages.written == 1, edit
    assert_converged(store_path, remote, user)

    before = remote.execute(XMINS).fetchall()
    noop = sync()
    assert noop.ok and noop.sent == 0, noop
    assert remote.execute(XMINS).fetchall() == before, "a no-op sync rewrote rows"

    conn = plain(store_path)
    conn.execute("UPDATE messages SET input_tokens = 99, total_tokens = 99 WHERE id = 'msg_1_2'")
    conn.execute("UPDATE messages SET synced_rev = 0 WHERE conversation_id = 'conv_2'")
    conn.close()

    def crash(phase: str, kind: str) -> None:
        if phase == "committed":
            raise Crash

    with pytest.raises(Crash):
        sync(crash)
    time.sleep(0.1)
    resend = sync()
    assert resend.ok, resend.error
    assert resend.messages.written == 0, "the re-sent batch wrote rows again"
    assert_converged(store_path, remote, user)
