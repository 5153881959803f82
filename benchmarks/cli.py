"""How long the commands a person types take, as whole processes, beside a bare interpreter.

    python -m benchmarks.cli [--rounds 15] [--dsn DSN]

Runs the venv's `chatsync` entry point (the script `uv sync` installs next to the venv's
python) and, as the baseline, `python -c pass` with the same python, alternating in each
round so that a busy machine slows all of them alike:

- `python -c pass` — the bare interpreter start (site and the editable install included);
- `chatsync status --json` with no daemon: the store's own view, nothing pending;
- `chatsync status --json` through a running daemon (its control socket);
- `chatsync sync-now` through a running daemon, with nothing to send;
- `chatsync status` through a running daemon, the table drawn by rich (no target: shown
  for what drawing costs).

The daemon is a real `chatsync run --watch off` on a temporary store, signed in, whose
start-up sync has pushed everything, against a throwaway database (migrated, dropped
afterwards) on the server the tests use (tests/support/pg.py: $CHATSYNC_TEST_DSN, else
127.0.0.1:5432, else an embedded one) or --dsn.
Prints a table (wall median, p90, x bare, target: <= 150 ms and <= 3x bare in the same run;
then each process's own CPU time, median, and its ratio to bare's) and the load average;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from localstore import Store
from tests.support import pg
from tests.support.daemons import DaemonProc, write_config
from tests.support.procs import wait_for

USER = "cccccccc-0000-4000-8000-00000000c11a"
TARGET_MS = 150.0
TARGET_X_BARE = 3.0
UNTARGETED = "chatsync status (daemon, drawn by rich)"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system) of one whole process; it must succeed.

    The CPU time is the process's own (not the daemon's it talks to): on a busy machine it
    moves much less than the wall time, so it says whether a change helped when the wall
    figures are noisy.
    """
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = (time.perf_counter() - started) * 1000
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n"
                             + out.read().decode(errors="replace"))
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10, method="inclusive")[8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dsn", help="a PostgreSQL server this may create a database on "
                        "(default: the tests' server)")
    args = parser.parse_args()

    bindir = Path(sys.executable).parent
    python, chatsync = str(bindir / "python"), str(bindir / "chatsync")
    if not Path(chatsync).exists():
        raise SystemExit(f"no {chatsync}: run `uv sync` first")
    # As on a person's machine: bytecode is cached (the warm-up round writes what is
    # missing), so every round measures imports, not compiling. PYTHONDONTWRITEBYTECODE
    # in the caller's environment would otherwise recompile every changed module each run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATSYNC_") and k != "PYTHONDONTWRITEBYTECODE"}

    admin = args.dsn or pg.find_server()[0]
    work = Path(tempfile.mkdtemp(prefix="chatsync-clibench-"))
    daemon: DaemonProc | None = None
    stack = ExitStack()
    try:
        dsn = stack.enter_context(pg.migrated_database(admin, "chatsync_clibench"))
        store_path = work / "store" / "chatsync.db"
        with Store(store_path) as store:
            store.sign_in(USER, "bench@example.com")
            conv = store.create_conversation("cli bench").id
            store.add_message(conv, "user", "sent by the start-up sync")
        daemon = DaemonProc.for_store(work, store_path, dsn, watch="off",
                                      interval_seconds=3600).start()
        with_daemon = daemon.config
        no_daemon, no_socket = write_config(work, store=store_path, dsn=dsn)  # no one there
        shutil.rmtree(no_socket.parent)

        def settled() -> bool:
            p = daemon.status()["pending"]
            return daemon.idle_after(1) and p["conversations"] + p["messages"] \
                + p["deletions"] == 0

        wait_for(settled, 60, "the daemon's start-up sync")

        commands: list[tuple[str, list[str]]] = [
            ("python -c pass (bare)", [python, "-c", "pass"]),
            ("chatsync status --json (no daemon)",
             [chatsync, "--config", str(no_daemon), "status", "--json"]),
            ("chatsync status --json (daemon)",
             [chatsync, "--config", str(with_daemon), "status", "--json"]),
            ("chatsync sync-now (daemon, nothing to send)",
             [chatsync, "--config", str(with_daemon), "sync-now"]),
            # for comparison, no target: the table a person reads is drawn with rich
            (UNTARGETED, [chatsync, "--config", str(with_daemon), "status"]),
        ]
        for _label, argv in commands:  # warm the page cache, write bytecode; not counted
            timed(argv, env)
        load_before = os.getloadavg()
        samples: dict[str, list[float]] = {label: [] for label, _ in commands}
        cpu: dict[str, list[float]] = {label: [] for label, _ in commands}
        for _ in range(args.rounds):
            for label, argv in commands:
                wall, used = timed(argv, env)
                samples[label].append(wall)
                cpu[label].append(used)
        load_after = os.getloadavg()
    finally:
        if daemon is not None:
            daemon.stop()
            daemon.close()
        stack.close()
        shutil.rmtree(work, ignore_errors=True)

    bare = statistics.median(samples[commands[0][0]])
    bare_cpu = statistics.median(cpu[commands[0][0]])
    print(f"{args.rounds} alternating rounds, {os.cpu_count()} cores, load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"python {sys.version.split()[0]}")
    rows = [("command", "median ms", "p90 ms", "x bare", "target", "met?", "cpu ms",
             "cpu x bare")]
    for label, values in samples.items():
        median, used = statistics.median(values), statistics.median(cpu[label])
        if label == commands[0][0]:
            rows.append((label, f"{median:.0f}", f"{p90(values):.0f}", "1.00", "", "",
                         f"{used:.0f}", "1.00"))
            continue
        met = median <= TARGET_MS and median <= TARGET_X_BARE * bare
        target = f"<= {TARGET_MS:.0f} ms, <= {TARGET_X_BARE:.0f}x bare"
        if label == UNTARGETED:
            target, met_text = "-", ""
        else:
            met_text = "yes" if met else "no"
        rows.append((label, f"{median:.0f}", f"{p90(values):.0f}", f"{median / bare:.2f}",
                     target, met_text, f"{used:.0f}", f"{used / bare_cpu:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())


if __name__ == "__main__":
    main()
