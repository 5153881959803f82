"""Typed outcomes and the control socket's messages, end to end: real `chatsync run`
processes and real PostgreSQL; the daemon's state, metrics and replies are read as the
typed values daemon/report.py and daemon/protocol.py define."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon import control
from daemon.protocol import (
    DaemonState,
    ErrorReply,
    Health,
    Route,
    Status,
    SyncReply,
)
from daemon.report import Outcome, SyncReport
from localstore import Store
from tests.support import ALICE, pg
from tests.support.daemons import DaemonProc
from tests.support.procs import ROOT, wait_for

Spawn = Callable[..., DaemonProc]


@pytest.fixture
def empty_dsn(admin_dsn: str) -> Iterator[str]:
    """A database chatsync never migrated: every push is refused for good."""
    name = pg.create_database(admin_dsn, "chatsync_empty")
    yield pg.dsn_for(admin_dsn, name)
    pg.drop_database(admin_dsn, name)


def status_of(daemon: DaemonProc) -> Status:
    answer = control.get_status(daemon.socket)
    assert answer is not None and answer.daemon is not None, daemon.log()
    return answer


def last_outcome(status: Status) -> Outcome | None:
    assert status.daemon is not None
    last = status.daemon.service.last_sync
    return last.outcome if last else None


def test_unreachable_remote_is_offline_from_the_outcome(
    spawn: Spawn, store: Store, remote_dsn: str
) -> None:
    store.sign_in(ALICE)
    store.create_conversation("nowhere to go")
    daemon = spawn(dsn=pg.unreachable(remote_dsn), watch="off", interval_seconds=3600).start()
    status = wait_for(lambda: (s := status_of(daemon)).daemon is not None
                      and s.daemon.state is DaemonState.OFFLINE and s, 30, "offline")
    assert last_outcome(status) is Outcome.UNREACHABLE
    assert status.daemon is not None and status.daemon.service.syncs.errors.get("transient")
    raw = daemon.get("/status").json()["daemon"]["last_sync"]
    # What scripts read before `outcome` existed is unchanged beside it.
    assert (raw["outcome"], raw["ok"], raw["transient"], raw["signed_out"]) == (
        "unreachable", False, True, False)
    assert "cannot reach the remote database" in raw["error"]
    health = Health.from_json(daemon.get("/health").json())
    assert health.ok and health.state in (DaemonState.OFFLINE, DaemonState.SYNCING)

    failed = daemon.cli("sync-now", "--json")
    assert failed.returncode == 1
    reply = SyncReply.from_json(json.loads(failed.stdout))
    assert reply.outcome is Outcome.UNREACHABLE and reply.by == "daemon"
    assert "temporary" in failed.stderr


def test_nothing_to_send_and_not_signed_in_are_outcomes_not_sentences(
    spawn: Spawn, store: Store
) -> None:
    daemon = spawn(watch="off", interval_seconds=3600).start()
    status = wait_for(lambda: (s := status_of(daemon)).daemon is not None
                      and s.daemon.service.syncs.total >= 1
                      and s.daemon.state is not DaemonState.SYNCING and s, 30, "first sync")
    assert last_outcome(status) is Outcome.NOT_SIGNED_IN
    assert status.daemon is not None and status.daemon.state is DaemonState.SIGNED_OUT

    store.sign_in(ALICE)
    reply = control.post_sync(daemon.socket)
    assert isinstance(reply, SyncReply) and reply.outcome is Outcome.NOTHING_TO_SEND
    assert reply.report.ok and reply.report.transient is None
    assert status_of(daemon).daemon.state is DaemonState.IDLE  # type: ignore[union-attr]

    store.create_conversation("one to send")
    reply = control.post_sync(daemon.socket)
    assert isinstance(reply, SyncReply) and reply.outcome is Outcome.SYNCED
    assert reply.report.conversations.sent == 1
    assert status_of(daemon).daemon.service.syncs.noop == 2  # type: ignore[union-attr]


def test_a_permanent_failure_backs_off_and_counts_as_permanent(
    spawn: Spawn, store: Store, empty_dsn: str
) -> None:
    store.sign_in(ALICE)
    store.create_conversation("refused")
    daemon = spawn(dsn=empty_dsn, watch="off", interval_seconds=3600).start()
    status = wait_for(lambda: (s := status_of(daemon)).daemon is not None
                      and s.daemon.service.syncs.total >= 1
                      and s.daemon.state is not DaemonState.SYNCING and s, 30, "first sync")
    assert last_outcome(status) is Outcome.PERMANENT_FAILURE, status
    assert status.daemon is not None
    assert status.daemon.state is DaemonState.BACKING_OFF
    assert status.daemon.service.syncs.errors == {"permanent": 1}
    plain = " ".join(daemon.cli("status").stdout.split())
    assert "will not fix itself" in plain

    # Metrics, parsed as Prometheus parses them: one series per name, the summary's _sum
    # and _count present once each and equal to what status says.
    text = daemon.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert families["chatsync_sync_duration_seconds"].type == "summary"
    assert samples[("chatsync_sync_duration_seconds_count", ())] == 1
    assert samples[("chatsync_sync_duration_seconds_sum", ())] > 0
    assert samples[("chatsync_sync_errors_total", (("kind", "permanent"),))] == 1
    assert samples[("chatsync_sync_errors_total", (("kind", "transient"),))] == 0
    assert samples[("chatsync_syncs_total", (("trigger", "startup"),))] == 1
    assert samples[("chatsync_consecutive_failures", ())] == 1
    assert samples[("chatsync_pending_rows", (("kind", "conversations"),))] == 1
    assert families["chatsync_last_sync_duration_seconds"].type == "gauge"
    # Nothing written twice: no series and no TYPE line repeated in the text itself (the
    # parsed families above would hide a family written twice).
    series = [line.rsplit(" ", 1)[0] for line in text.splitlines()
              if line and not line.startswith("#")]
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(series) == len(set(series)) and len(types) == len(set(types)), text


def test_messages_round_trip_through_a_real_socket(spawn: Spawn, store: Store) -> None:
    store.sign_in(ALICE)
    store.create_conversation("round trip")
    daemon = spawn(watch="off", interval_seconds=3600).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")

    raw_sync = control.request(daemon.socket, *Route.SYNC, read_timeout=60)
    assert raw_sync is not None and raw_sync.status_code == 200
    assert SyncReply.from_json(raw_sync.json()).to_json() == raw_sync.json()
    for route, kind in ((Route.STATUS, Status), (Route.HEALTH, Health)):
        raw = daemon.get(route[1]).json()
        assert kind.from_json(raw).to_json() == raw, route  # type: ignore[attr-defined]
    status = Status.from_json(daemon.get("/status").json())
    assert status.daemon is not None and status.daemon.pid == daemon.proc.pid  # type: ignore[union-attr]
    assert status.daemon.service.last_sync is not None
    assert status.daemon.service.last_sync.reason == "manual"
    assert status.store["signed_in"] == ALICE

    missing = control.request(daemon.socket, "GET", "/nowhere")
    assert missing is not None and missing.status_code == 404
    assert ErrorReply.from_json(missing.json()).error == "no route GET /nowhere"
    assert daemon.stop() == 0


def test_reports_from_a_daemon_without_outcome_are_still_read() -> None:
    """A CLI newer than the running daemon reads its replies (no `outcome` key yet)."""
    base = {"started_at": "2026-01-01T00:00:00+00:00", "summary": "s", "by": "daemon"}
    cases = [
        ({"ok": True, "skipped": "nothing to send"}, Outcome.NOTHING_TO_SEND),
        ({"ok": True, "conversations": {"sent": 1, "written": 1, "quarantined": 0}},
         Outcome.SYNCED),
        ({"ok": False, "error": "x", "transient": True}, Outcome.TRANSIENT_FAILURE),
        ({"ok": False, "error": "x", "transient": False}, Outcome.PERMANENT_FAILURE),
        ({"ok": False, "error": "x", "transient": False, "signed_out": True},
         Outcome.SIGNED_OUT),
    ]
    for extra, outcome in cases:
        assert SyncReply.from_json({**base, **extra}).outcome is outcome, extra
    report = SyncReport(started_at="t")
    report.fail(Outcome.UNREACHABLE, "cannot reach")
    assert SyncReport.from_json(report.to_json()) == report


def test_the_protocol_module_is_import_light() -> None:
    """The CLI imports daemon.protocol on every command: it must pull in no library."""
    code = ("import sys, daemon.protocol; print(sorted({m.split('.')[0] for m in sys.modules "
            "if m.split('.')[0] in {'httpx', 'psycopg', 'pydantic', 'rich', 'click', "
            "'sqlite_utils', 'localstore', 'remote'}}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_engine_outcome_for_a_database_that_refuses(store: Store, empty_dsn: str) -> None:
    """The engine decides the outcome itself; the service and CLI only read it."""
    from daemon.engine import SyncEngine

    store.sign_in(ALICE)
    store.create_conversation("c")
    engine = SyncEngine(store.path, empty_dsn)
    try:
        report = engine.sync()
    finally:
        engine.close()
    assert report.outcome is Outcome.PERMANENT_FAILURE and not report.ok
    assert report.transient is False and report.error


def test_a_sync_stopped_between_batches_says_stopped(store: Store, remote_dsn: str) -> None:
    """SIGTERM during a sync: the engine stops at the next batch and the report says so
    (not a failure: nothing backs off, and the rest goes at the next sync)."""
    from daemon.engine import SyncEngine

    store.sign_in(ALICE)
    for n in range(3):
        store.create_conversation(f"c{n}")
    batches: list[str] = []
    engine = SyncEngine(store.path, remote_dsn, batch_size=1,
                        on_phase=lambda phase, kind: batches.append(phase),
                        # after the first batch's remote commit (its local marking may
                        # still run beside the next push: daemon/engine.py)
                        should_stop=lambda: batches.count("committed") >= 1)
    try:
        report = engine.sync()
        assert report.outcome is Outcome.STOPPED and report.ok, report
        assert report.conversations.sent == 1 and report.stopped
        assert "stopped between batches" in report.summary()
        engine.should_stop = lambda: False
        assert engine.sync().outcome is Outcome.SYNCED
    finally:
        engine.close()
