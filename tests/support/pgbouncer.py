"""PgBouncer in transaction mode, as most hosted PostgreSQL puts in front, on a free
loopback port with `auth_type = trust` (Debian package `pgbouncer`, installed by .ci/run).

It refuses to run as root: as root it is started with `-u postgres` (it drops privileges
itself) from a directory that user owns. Started in its own session (process group), so
stopping it stops all of it; nothing is killed by name.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.procs import SetupError, free_port, listening, stop_group, wait_for

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
max_client_conn = {max_client}
default_pool_size = {pool}
reserve_pool_size = 0
max_db_connections = {pool}
ignore_startup_parameters = extra_float_digits,options
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
admin_users = postgres
"""


class PgBouncerError(SetupError):
    """PgBouncer cannot run here, or did not come up."""


class PgBouncerUnavailable(PgBouncerError):
    """Not installed, or root with no postgres user to run it as."""


def binary() -> str | None:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return found if Path(found).exists() else None


class PgBouncer:
    """PgBouncer in front of *host*:*port*, letting *user* in; *pool* server connections
    to PostgreSQL at the most, *max_client* clients."""

    def __init__(self, host: str, port: int, user: str, *, pool: int, max_client: int) -> None:
        found = binary()
        if found is None:
            raise PgBouncerUnavailable(
                "PgBouncer is not installed (apt-get install -y pgbouncer)")
        self.cmd = [found]
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PgBouncerUnavailable(
                    "PgBouncer refuses to run as root and there is no postgres user") from None
            self.cmd += ["-u", "postgres"]
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chatsync-pgb-"))
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(INI.format(
            host=host, port=port, listen=self.port, dir=self.dir, pool=pool,
            max_client=max_client))
        self.cmd.append(str(self.dir / "pgbouncer.ini"))
        if owner is not None:
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15) -> PgBouncer:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise PgBouncerError(f"pgbouncer exited {self.proc.returncode}: {self.log()}")
            return listening(self.port)

        wait_for(up, timeout_s, "PgBouncer to listen", error=PgBouncerError)
        return self

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        stop_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
