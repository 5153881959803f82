"""`chatsync serve` when things break: the database goes away and comes back, the server is
killed in the middle of a batch. Nothing half-written, nothing counted twice.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.support import ALICE
from tests.support.faults_proxy import FaultProxy
from tests.support.procs import wait_for
from tests.support.remote_facts import audited_truth, usage
from tests.support.servers import HS_SECRET, ServerProc, batch, conversation, hs_token, message

ACTIVE_PUSH = """
SELECT count(*) FROM pg_stat_activity
WHERE application_name = 'chatsync-server' AND state = 'active'
  AND query ILIKE '%chat_messages%'
"""


def test_database_outage_is_503_then_the_server_recovers_by_itself(
    tmp_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    with FaultProxy(int(conninfo_to_dict(remote_dsn).get("port", 5432))) as proxy:
        dsn = proxy.dsn(conninfo_to_dict(remote_dsn))
        proc = ServerProc(tmp_path, dsn, secret=HS_SECRET, pool_timeout_seconds=1).start()
        try:
            token = hs_token(ALICE)
            first = batch([conversation("c1", ALICE)], [message("m1", "c1")])
            assert proc.post("/v1/push", first, token).status_code == 200
            assert httpx.get(proc.url + "/health").status_code == 200

            proxy.refuse(True)
            proxy.cut()
            second = batch([], [message("m2", "c1")])
            down = proc.post("/v1/push", second, token)
            assert down.status_code == 503 and down.headers["retry-after"] == "5", down.text
            assert httpx.get(proc.url + "/health").status_code == 503

            proxy.refuse(False)
            wait_for(lambda: proc.post("/v1/push", second, token).status_code == 200, 60,
                     "the server to reach the database again")
        finally:
            proc.stop()
    assert [r[0] for r in remote.execute("SELECT id FROM chat_messages ORDER BY id")] == [
        "m1", "m2"]


def test_server_killed_mid_batch_then_the_resend_is_exact(
    tmp_path: Path, remote_dsn: str, remote: psycopg.Connection
) -> None:
    token = hs_token(ALICE)
    big = batch([conversation("c1", ALICE)],
                [message(f"m{i:05}", "c1", content="x" * 200, tokens=i % 50,
                         role="user" if i % 2 else "assistant") for i in range(20_000)])
    proc = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET,
                      max_body_bytes=64 * 1024 * 1024).start()
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(proc.post("/v1/push", big, token).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(lambda: remote.execute(ACTIVE_PUSH).fetchone()[0], 60,
                 "the server to be writing the messages")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)
    finally:
        sender.join(60)
        proc.stop()
    assert outcome and isinstance(outcome[0], httpx.HTTPError)  # no answer: not acknowledged
    # The killed backend's transaction rolls back: the messages are all there or none is.
    wait_for(lambda: remote.execute(ACTIVE_PUSH).fetchone()[0] == 0, 30, "the rollback")
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] in (0, 20_000)

    again = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET,
                       max_body_bytes=64 * 1024 * 1024).start()
    try:
        resent = again.post("/v1/push", big, token)
        assert resent.status_code == 200, resent.text
        assert len(resent.json()["messages"]["acked"]) == 20_000
        started = time.monotonic()
        assert again.post("/v1/push", big, token).json()["messages"]["written"] == 0
        assert time.monotonic() - started < 30
    finally:
        again.stop()
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 20_000
    assert usage(remote) == audited_truth(remote)
