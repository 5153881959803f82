"""Live pulls through a real `chatsync serve` on the real PostgreSQL: a waiting pull is
answered within a second of another writer's commit (the web app's INSERT, another
device's push), never by the device's own push, survives its listener being killed, and an
idle waiting device costs no query and no pooled connection."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from remote.http_transport import HttpTransport
from tests.support import ALICE, BOB
from tests.support.auth_standin import AuthStandIn
from tests.support.devices import HttpDevice
from tests.support.procs import wait_for
from tests.support.servers import HS_SECRET, ServerProc, batch, conversation, hs_token, message

TOKENS = {ALICE: hs_token(ALICE), BOB: hs_token(BOB)}
LISTENER_APP = "chatsync-server-listen"


@pytest.fixture
def server(tmp_path: Path, remote_dsn: str) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET, live_wait_max_seconds=20,
                      pool_size=5).start()
    wait_for(lambda: _listener_pid(remote_dsn) is not None, 10, "the listener to connect")
    yield proc
    proc.stop()


def _listener_pid(dsn: str) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                           "AND datname = current_database()", (LISTENER_APP,)).fetchone()
    return None if row is None else int(row[0])


def pull(server: ServerProc, user: str, origin: str, cursor: str | None = None,
         **extra: Any) -> dict[str, Any]:
    r = httpx.post(server.url + "/v1/pull", timeout=60,
                   json={"cursor": cursor, "origin": origin, **extra},
                   headers={"Authorization": f"Bearer {TOKENS[user]}"})
    assert r.status_code == 200, r.text
    return r.json()


def push(server: ServerProc, user: str, origin: str, **rows: Any) -> None:
    r = server.post("/v1/push", batch(**rows, origin=origin), TOKENS[user])
    assert r.status_code == 200, r.text


class Waiting:
    """A live pull running in a thread; `answer` and when it came."""

    def __init__(self, server: ServerProc, user: str, origin: str, cursor: str,
                 wait_seconds: float) -> None:
        self.answer: dict[str, Any] | None = None
        self.at = 0.0

        def run() -> None:
            self.answer = pull(server, user, origin, cursor, wait_seconds=wait_seconds)
            self.at = time.monotonic()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        time.sleep(0.3)  # the request has reached its wait
        assert self.answer is None, "the pull should be waiting"

    def result(self, timeout: float = 30) -> dict[str, Any]:
        self.thread.join(timeout)
        assert self.answer is not None, "the waiting pull never answered"
        return self.answer


def _setup(server: ServerProc, remote_dsn: str) -> str:
    """Alice's conversation C1 (pushed by device A); device B is up to date: its cursor."""
    push(server, ALICE, "devA", conversations=[conversation("C1", ALICE)])
    first = pull(server, ALICE, "devB")
    assert first["full"] and [c["id"] for c in first["conversations"]] == ["C1"]
    return first["cursor"]


def _webapp_insert(dsn: str, mid: str, content: str = "from the web") -> float:
    """The web app's own INSERT (no chatsync origin); the time of its COMMIT."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.chat_messages (id, session_id, role, content) "
                     "VALUES (%s, 'C1', 'assistant', %s)", (mid, content))
        return time.monotonic()


def test_web_app_insert_wakes_a_waiting_pull_within_a_second(
        server: ServerProc, remote_dsn: str) -> None:
    cursor = _setup(server, remote_dsn)
    latencies = []
    for i in range(10):
        waiting = Waiting(server, ALICE, "devB", cursor, 15)
        committed = _webapp_insert(remote_dsn, f"W{i}")
        answer = waiting.result()
        latencies.append(waiting.at - committed)
        assert answer["changed"] and not answer.get("resync")
        assert [m["id"] for m in answer["messages"]] == [f"W{i}"]
        assert answer["messages"][0]["content"] == "from the web"
        cursor = answer["cursor"]
    print(f"\nweb-app commit -> waiting pull answered: p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 1.0


def test_another_devices_push_wakes_but_the_own_push_does_not(
        server: ServerProc, remote_dsn: str) -> None:
    cursor = _setup(server, remote_dsn)
    # Device B's own push while it waits: no answer before the wait ends, then "no change".
    waiting = Waiting(server, ALICE, "devB", cursor, 3)
    started = time.monotonic()
    push(server, ALICE, "devB", messages=[message("B1", "C1", content="mine")])
    answer = waiting.result()
    assert waiting.at - started >= 2.5, "the device's own push answered its own wait"
    assert answer == {"changed": False, "full": False, "cursor": cursor, "more": False,
                      "message_count": 0, "conversations": [], "messages": []}
    # Bob's push is Bob's: Alice's waiting pull stays asleep.
    push(server, BOB, "devBob", conversations=[conversation("CB", BOB)])
    waiting = Waiting(server, ALICE, "devB", cursor, 2)
    push(server, BOB, "devBob", messages=[message("MB", "CB")])
    assert not waiting.result()["changed"]
    # Device A's push wakes B at once, and B's pull skips the echo of its own B1.
    waiting = Waiting(server, ALICE, "devB", cursor, 15)
    pushed = time.monotonic()
    push(server, ALICE, "devA", messages=[message("A1", "C1", content="from A")])
    answer = waiting.result()
    print(f"\ndevice A's push -> device B's waiting pull answered in "
          f"{(waiting.at - pushed) * 1000:.1f} ms (push request included)")
    assert waiting.at - pushed < 1.0
    assert [m["id"] for m in answer["messages"]] == ["A1"]


def test_http_user_wait_for_changes_then_the_pull_reuses_the_answer(
        server: ServerProc, remote_dsn: str) -> None:
    cursor = _setup(server, remote_dsn)

    class Token:
        def access_token(self, *, rejected: str | None = None) -> str:
            return TOKENS[ALICE]

    transport = HttpTransport(server.url, Token(), "devB")
    user = transport.as_user(ALICE, "")
    try:
        t0 = time.monotonic()
        assert user.wait_for_changes(cursor, 1) is False
        assert 0.9 <= time.monotonic() - t0 < 5
        threading.Timer(0.3, _webapp_insert, (remote_dsn, "W1")).start()
        assert user.wait_for_changes(cursor, 15) is True
        requests_before = _pull_requests(server)
        with user.read_changes(cursor, page_size=100) as changes:
            assert changes is not None
            assert [m["id"] for page in changes.messages for m in page] == ["W1"]
        assert _pull_requests(server) == requests_before, "the live answer was asked again"
    finally:
        transport.disconnect()


def _pull_requests(server: ServerProc) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('chatsync_server_requests_total{route="/v1/pull"'))


def test_listener_killed_a_change_committed_meanwhile_is_still_delivered(
        server: ServerProc, remote_dsn: str) -> None:
    cursor = _setup(server, remote_dsn)
    for round_ in range(3):
        old = _listener_pid(remote_dsn)
        assert old is not None
        waiting = Waiting(server, ALICE, "devB", cursor, 20)
        with psycopg.connect(remote_dsn, autocommit=True) as conn:
            # Killed, and the change committed before it can have reconnected (≥ 0.4 s):
            # its notification goes to nobody.
            conn.execute("SELECT pg_terminate_backend(%s)", (old,))
            conn.execute("INSERT INTO public.chat_messages (id, session_id, role, content) "
                         "VALUES (%s, 'C1', 'user', 'while away')", (f"K{round_}",))
        answer = waiting.result()
        assert [m["id"] for m in answer["messages"]] == [f"K{round_}"]
        new = _listener_pid(remote_dsn)
        assert new is not None and new != old
        cursor = answer["cursor"]
    assert "live-pull listener lost its database connection" in server.log()


def test_fifty_idle_waiting_pulls_cost_no_query_and_no_connection(
        server: ServerProc, remote_dsn: str) -> None:
    cursor = _setup(server, remote_dsn)
    with ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(pull, server, ALICE, f"dev{i}", cursor, wait_seconds=12)
                   for i in range(50)]
        time.sleep(3)  # every pull has made its one check and is waiting
        text = httpx.get(server.url + "/metrics").text
        assert "chatsync_server_live_waiting 50.0" in text
        assert "chatsync_server_pool_in_use 0.0" in text
        with psycopg.connect(remote_dsn, autocommit=True) as conn:
            started = conn.execute("SELECT now()").fetchone()[0]
            commits_before = _commits(conn)
            time.sleep(5)
            # Every server connection: no statement started during the 5 s, none busy, none
            # opened anew. Exact, unlike pg_stat_database, which on this shared machine also
            # counts the autovacuum workers' visits (~15 transactions/s in an empty database).
            busy = conn.execute(
                "SELECT count(*) FILTER (WHERE query_start > %s OR backend_start > %s "
                "OR state <> 'idle'), count(*) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'chatsync-server%%'", (started, started)).fetchone()
            commits_after = _commits(conn)
        assert busy[1] >= 2  # the pool's connection(s) and the listener
        assert busy[0] == 0, "a server connection ran a query while the devices waited"
        print(f"\n50 waiting pulls for 5 s: 0 statements by the server; "
              f"{commits_after - commits_before} transactions in pg_stat_database "
              f"(autovacuum and this test's own)")
        answers = [f.result() for f in futures]
    assert all(not a["changed"] for a in answers)


def _commits(conn: psycopg.Connection) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(conn.execute("SELECT xact_commit FROM pg_stat_database "
                            "WHERE datname = current_database()").fetchone()[0])


def test_wait_is_capped_by_the_server_and_needs_a_cursor(
        tmp_path: Path, remote_dsn: str) -> None:
    server = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET, live_wait_max_seconds=1)
    server.start()
    try:
        cursor = _setup(server, remote_dsn)
        t0 = time.monotonic()
        assert not pull(server, ALICE, "devB", cursor, wait_seconds=30)["changed"]
        assert time.monotonic() - t0 < 5
        # no cursor: a first pull, answered at once
        assert pull(server, ALICE, "devC", None, wait_seconds=30)["full"]
        r = httpx.post(server.url + "/v1/pull", json={"cursor": cursor, "wait_seconds": -1},
                       headers={"Authorization": f"Bearer {TOKENS[ALICE]}"})
        assert r.status_code == 422 and r.json()["field"] == "wait_seconds"
    finally:
        server.stop()


def test_stopping_the_server_answers_waiting_pulls_at_once(
        server: ServerProc, remote_dsn: str) -> None:
    cursor = _setup(server, remote_dsn)
    waiting = Waiting(server, ALICE, "devB", cursor, 20)
    t0 = time.monotonic()
    server.stop()
    assert not waiting.result()["changed"]
    assert time.monotonic() - t0 < 5



def test_wait_then_the_engines_pull_brings_a_web_app_row_into_the_store_within_a_second(
        tmp_path: Path, server: ServerProc, remote_dsn: str, auth: AuthStandIn) -> None:
    """The daemon's live loop, by hand: wait_for_changes on the engine's own transport, then
    the engine's normal sync (which reuses the live answer). Commit → local store."""
    from localstore.inbox import Inbox

    desktop = HttpDevice(tmp_path / "desktop" / "chatsync.db", server, auth)
    try:
        push(server, ALICE, "devA", conversations=[conversation("C1", ALICE)])
        desktop.sync()
        user = desktop.engine.transport.as_user(ALICE, "alice@example.com")
        latencies = []
        for i in range(10):
            cursor = Inbox(desktop.engine.local).cursor(ALICE)
            assert cursor is not None
            committed: list[float] = []
            timer = threading.Timer(
                0.2, lambda i=i, done=committed: done.append(
                    _webapp_insert(remote_dsn, f"L{i}")))
            timer.start()
            assert user.wait_for_changes(cursor, 10)
            report = desktop.sync()
            landed = time.monotonic()
            timer.join()
            assert report.pulled == 1
            assert desktop.store.message(f"L{i}").content == "from the web"
            latencies.append(landed - committed[0])
        print(f"\nweb-app commit -> row in the device's store (wait + engine sync): p50 "
              f"{statistics.median(latencies) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms")
        assert max(latencies) < 1.0
    finally:
        desktop.close()


def test_two_instances_a_push_through_one_wakes_a_pull_waiting_on_the_other(
        tmp_path: Path, server: ServerProc, remote_dsn: str) -> None:
    """No state in the server: each instance LISTENs itself, PostgreSQL does the rest."""
    other = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET).start(workers=2)
    try:
        wait_for(lambda: _listeners(remote_dsn) == 3, 15, "three listeners (1 + 2 workers)")
        cursor = _setup(server, remote_dsn)
        for round_ in range(4):  # several requests, so both workers of `other` serve some
            waiting = Waiting(other, ALICE, "devB", cursor, 15)
            pushed = time.monotonic()
            push(server, ALICE, "devA", messages=[message(f"X{round_}", "C1")])
            answer = waiting.result()
            assert [m["id"] for m in answer["messages"]] == [f"X{round_}"]
            assert waiting.at - pushed < 1.0
            cursor = answer["cursor"]
    finally:
        other.stop()


def _listeners(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                "application_name = %s AND datname = current_database()",
                                (LISTENER_APP,)).fetchone()[0])
