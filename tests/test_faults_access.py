"""Access: the control socket refuses other users (mode 0600, and the SO_PEERCRED owner
check even when the mode is widened); no secret in logs, status, metrics or error output;
RLS refuses every write for another user even when the local store is crafted to try.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest

from daemon.engine import SyncEngine
from localstore import Store
from tests.support.daemons import DaemonProc, cli, write_config
from tests.support.stores import new_user, plain

SECRET = "pw-Th1s-must-never-show"
BOB = "bbbbbbbb-0000-4000-8000-0000000000b1"
# Run by another user with the system Python (no venv needed): try to speak to the socket.
PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    s.sendall(b"GET /status HTTP/1.0\\r\\n\\r\\n")
    data = s.recv(4096)
    print("ANSWERED" if data else "CLOSED")
except OSError as e:
    print("REFUSED", e)
"""
BOB_DATA = """
SELECT s.id, s.user_id::text, s.title, s.is_active, m.id, m.content, m.input_tokens,
       m.session_id
FROM chat_sessions AS s LEFT JOIN chat_messages AS m ON m.session_id = s.id
WHERE s.user_id = %s ORDER BY s.id, m.id
"""


def as_nobody(script: str, *args: str) -> str:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or python is None or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script,
         *args], capture_output=True, text=True, timeout=20)
    return out.stdout + out.stderr


def test_control_socket_refuses_other_users(
    tmp_path: Path, store_path: Path, remote_dsn: str
) -> None:
    new_user(store_path)
    config, sock = write_config(tmp_path, store=store_path, dsn=remote_dsn)
    d = DaemonProc(config, sock, tmp_path / "daemon.log", watch="off").start()
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert "REFUSED" in as_nobody(PROBE, str(sock))
        # Widen the socket and its directory: the owner check still refuses.
        os.chmod(sock.parent, 0o755)
        os.chmod(sock, 0o666)
        said = as_nobody(PROBE, str(sock))
        assert "ANSWERED" not in said, said
        assert "refused a control connection from uid 65534" in d.log()
        assert d.status()["daemon"] is not None  # the owner still gets answers
        assert d.stop() == 0
    finally:
        d.close()


def test_no_secret_in_logs_status_metrics_or_errors(
    tmp_path: Path, store_path: Path, remote_dsn: str
) -> None:
    user = new_user(store_path)
    with Store(store_path) as s:
        s.add_message(s.create_conversation("c").id, "user", "hello")
    secret_dsn = f"{remote_dsn} password={SECRET}"
    config, sock = write_config(tmp_path, store=store_path, dsn=secret_dsn)
    d = DaemonProc(config, sock, tmp_path / "daemon.log", watch="off").start()
    outputs: list[str] = []
    try:
        r = cli(config, "sync-now", "--json")
        outputs += [r.stdout, r.stderr]
        r = cli(config, "status", "--json")
        outputs += [r.stdout, r.stderr, d.get_text("/status"), d.get_text("/metrics")]
        assert d.stop() == 0
    finally:
        d.close()
    # Unreachable (a closed port), and a bad database name: errors name neither password.
    for broken in (secret_dsn.replace("port=5432", "port=1"),
                   secret_dsn.replace("dbname=", "dbname=nope_")):
        bad_config, _ = write_config(tmp_path, store=store_path, dsn=broken)
        r = cli(bad_config, "sync-now")
        assert r.returncode != 0
        outputs += [r.stdout, r.stderr]
        r = cli(bad_config, "status")
        outputs += [r.stdout, r.stderr]
    outputs.append(d.log())
    leaked = [o for o in outputs if SECRET in o]
    assert not leaked, leaked[0][:2000]
    assert user


def test_rls_refuses_every_crafted_write_for_another_user(
    store_path: Path, remote_dsn: str, remote: psycopg.Connection, tmp_path: Path
) -> None:
    # Bob's own device pushes his conversation.
    bob_store = tmp_path / "bob.db"
    with Store(bob_store) as s:
        s.sign_in(BOB)
        conv = s.create_conversation("bob's private")
        s.add_message(conv.id, "user", "bob's secret", input_tokens=7)
        bob_msg = s.conn.execute("SELECT id FROM messages").fetchone()[0]
    e = SyncEngine(bob_store, remote_dsn)
    assert e.sync().ok
    e.close()
    before = remote.execute(BOB_DATA, (BOB,)).fetchall()
    usage_before = remote.execute(
        "SELECT * FROM user_usage_daily WHERE user_id = %s", (BOB,)).fetchall()

    # Alice's store, crafted with plain SQL to write into Bob's data every way it can.
    alice = new_user(store_path)
    c = plain(store_path)
    c.execute("PRAGMA foreign_keys = OFF")
    c.execute("INSERT INTO conversations (id, user_id, title) VALUES (?, ?, 'hijacked')",
              (conv.id, alice))
    c.execute("INSERT INTO messages (id, conversation_id, role, content, input_tokens) "
              "VALUES (?, ?, 'user', 'overwritten', 999)", (bob_msg, conv.id))
    c.execute("INSERT INTO conversations (id, user_id, title) VALUES ('conv_alice', ?, 'mine')",
              (alice,))
    c.execute("INSERT INTO messages (id, conversation_id, role, content) "
              "VALUES ('msg_alice_ok', 'conv_alice', 'user', 'fine')")
    # Tombstones for Bob's rows, as if Alice had deleted them.
    c.execute("INSERT OR REPLACE INTO tombstones (kind, id, user_id, rev) "
              "VALUES ('conversation', ?, ?, 1000), ('message', ?, ?, 1001)",
              (conv.id, alice, bob_msg, alice))
    c.close()

    e = SyncEngine(store_path, remote_dsn)
    report = e.sync()
    e.close()
    assert report.ok, report.error
    assert remote.execute(BOB_DATA, (BOB,)).fetchall() == before, "Bob's data changed"
    assert remote.execute("SELECT * FROM user_usage_daily WHERE user_id = %s",
                          (BOB,)).fetchall() == usage_before
    assert remote.execute("SELECT count(*) FROM chat_messages WHERE id = 'msg_alice_ok'"
                          ).fetchone()[0] == 1, "Alice's own row did not sync"
    reasons = plain(store_path).execute("SELECT id, reason FROM quarantine").fetchall()
    assert any(r[0] == conv.id and "row-level security" in r[1] for r in reasons), reasons


# Malformed DSNs whose libpq parse error would quote the password, and well-formed ones the
# old masking got wrong (a space, a '?' or a '/' in the password; sslpassword).
BROKEN_SECRET = "hunZZter2"
MALFORMED_DSNS = [
    f"postgresql://u:hun%zz{BROKEN_SECRET}@127.0.0.1:1/app",
    f"host=127.0.0.1 port=1 password=hun {BROKEN_SECRET} dbname=app",
    f"host=127.0.0.1 port=1 password='{BROKEN_SECRET}",
    f"postgresql://u:x?{BROKEN_SECRET}@127.0.0.1:1/app",
    f"postgresql://u:x/{BROKEN_SECRET}@127.0.0.1:1/app",
    f"host=127.0.0.1 port=1 sslpassword={BROKEN_SECRET}",
]


@pytest.mark.parametrize("dsn", MALFORMED_DSNS)
def test_no_secret_from_a_malformed_or_odd_dsn(tmp_path: Path, store_path: Path, dsn: str) -> None:
    new_user(store_path)
    with Store(store_path) as s:
        s.create_conversation("c")
    config, _ = write_config(tmp_path, store=store_path, dsn=dsn)
    outputs = []
    for args in (("sync-now",), ("sync-now", "--json"), ("status",), ("status", "--json"),
                 ("migrate",)):
        r = cli(config, *args)
        outputs.append((args, r.returncode, r.stdout + r.stderr))
    for args, _code, out in outputs:
        assert BROKEN_SECRET not in out and "ter2" not in out, (args, out)
        assert "Traceback" not in out, (args, out)
    # The failures say what is wrong, in a sentence.
    failing = [o for o in outputs if o[0][0] in ("sync-now", "migrate")]
    assert all(code != 0 for _, code, _ in failing)


def test_store_and_its_folder_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new-folder" / "chatsync.db"
    with Store(path) as s:
        s.create_conversation("private")  # a write, so the -wal and -shm files exist
        files = [path, path.with_name("chatsync.db-wal"), path.with_name("chatsync.db-shm")]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert modes == dict.fromkeys(modes, 0o600), modes


def test_a_store_made_readable_by_others_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "chatsync.db"
    with Store(path) as s:
        s.create_conversation("private")
    path.chmod(0o644)
    with Store(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_socket_setting_naming_a_regular_file_never_deletes_it(
    tmp_path: Path, store_path: Path, remote_dsn: str
) -> None:
    new_user(store_path)
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    config, _ = write_config(tmp_path, store=store_path, dsn=remote_dsn)
    config.write_text(re.sub(r"^socket = .*$", f"socket = {json.dumps(str(victim))}",
                             config.read_text(), flags=re.MULTILINE))
    r = cli(config, "run", "--watch", "off", timeout=60)
    assert r.returncode != 0
    assert "not a socket" in r.stderr, r.stderr
    assert victim.read_text() == "precious"
