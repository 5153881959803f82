"""A full sync through PgBouncer in transaction mode, as most hosted PostgreSQL puts in front:
first sync, edit sync, no-op sync, and a crash between the remote commit and the local mark
followed by a re-send. Each transaction may land on a different server connection, so any
session state or server-side prepared statement would break here.

PgBouncer (tests/support/pgbouncer.py) is started by the test. Without the binary the test
is skipped with a loud reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from daemon.engine import SyncEngine
from tests.support import pgbouncer
from tests.support.pgbouncer import PgBouncer, PgBouncerUnavailable
from tests.support.stores import assert_converged, fill, new_user, plain

XMINS = "SELECT id, xmin::text FROM public.chat_messages UNION ALL " \
        "SELECT id, xmin::text FROM public.chat_sessions ORDER BY 1"


@pytest.fixture
def bouncer(admin_dsn: str) -> Iterator[int]:
    if pgbouncer.binary() is None:
        pytest.skip("PGBOUNCER NOT INSTALLED: the transaction-pooler test did not run "
                    "(apt-get install -y pgbouncer; .ci/run does it)")
    params = conninfo_to_dict(admin_dsn)
    try:
        pooler = PgBouncer(params.get("host", "127.0.0.1"), int(params.get("port", 5432)),
                           params.get("user", "postgres"), pool=4, max_client=100)
    except PgBouncerUnavailable as exc:  # root, and no postgres user to run it as
        pytest.skip(str(exc))
    try:
        pooler.start()
        yield pooler.port
    finally:
        pooler.stop()


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
