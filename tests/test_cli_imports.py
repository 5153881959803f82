"""`chatsync status` and `sync-now` stay light: the libraries that made every command take
half a second are not imported on their way (what they import, not how long they take:
timings belong to `benchmarks/cli.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from localstore import Store
from tests.support import ALICE
from tests.support.daemons import DaemonProc
from tests.support.procs import ROOT, wait_for

# Each took tens of milliseconds or more to import; none is needed to read the store, to
# load the configuration or to ask the daemon.
HEAVY = ("pydantic", "psycopg", "rich", "httpx", "sqlite_utils", "watchdog", "apscheduler",
         "starlette", "uvicorn", "jwt", "cryptography", "msgspec", "daemon.engine",
         "daemon.control", "remote.connect", "remote.transport")

# Runs the CLI in this process, then reports which of HEAVY it imported.
PROBE = """
import json, sys
from daemon.cli import main
heavy = json.loads(sys.argv[1])
sys.argv = ["chatsync", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""


def heavy_imports(*args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), *args], cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CHATSYNC_")},
             **(env or {})},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_imports_no_heavy_library() -> None:
    code = f"import sys, daemon.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_status_from_the_store_imports_no_heavy_library(tmp_path: Path) -> None:
    with Store(tmp_path / "store.db") as store:
        store.sign_in(ALICE)
        store.create_conversation("pending")
    env = {"CHATSYNC_LOCAL_PATH": str(tmp_path / "store.db"),
           "CHATSYNC_REMOTE_DSN": "postgresql://u:pw@127.0.0.1:1/app",
           "CHATSYNC_DAEMON_SOCKET": str(tmp_path / "no-daemon.sock"),
           "CHATSYNC_CONFIG": str(tmp_path / "absent.toml")}
    (tmp_path / "absent.toml").write_text("[sync]\nbatch_size = 10\n")
    assert heavy_imports("status", "--json", env=env) == []


def test_status_and_sync_now_through_the_daemon_import_no_heavy_library(
    spawn: Callable[..., DaemonProc], store: Store
) -> None:
    store.sign_in(ALICE)
    daemon = spawn(watch="off", interval_seconds=3600).start()
    wait_for(lambda: daemon.idle_after(1), what="the start-up sync")
    args = ("--config", str(daemon.config))
    assert heavy_imports(*args, "status", "--json") == []
    assert heavy_imports(*args, "sync-now") == []
    assert daemon.syncs()["by_reason"]["manual"] == 1  # it did ask the daemon
