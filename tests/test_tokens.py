"""The device's session: sign-in with a password, refresh before expiry and after a 401,
one refresh at a time across threads and processes, rotated token stored before use, and a
refusal for good telling the truth ("signed out: sign in again") without losing edits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.tokens import SIGN_IN_AGAIN, SignedOut, TokenKeeper, store_session
from localstore import Store
from remote.auth_client import AuthClient, AuthRefused, AuthUnavailable
from tests.support import ALICE
from tests.support.auth_standin import AuthStandIn
from tests.support.procs import ROOT

PASSWORD = "correct horse battery staple"


@pytest.fixture
def auth() -> Iterator[AuthStandIn]:
    standin = AuthStandIn(users={"alice@example.com": (ALICE, PASSWORD)}).start()
    yield standin
    standin.stop()


def signed_in(store_path: Path, auth: AuthStandIn, *, expires_in: int = 3600) -> Store:
    auth.expires_in = expires_in
    client = AuthClient(auth.url, "anon-key")
    tokens = client.sign_in_with_password("alice@example.com", PASSWORD)
    client.close()
    store = Store(store_path)
    store_session(store.conn, tokens)
    auth.expires_in = 3600  # what a refresh issues from now on
    return store


def session_row(store: Store) -> dict:
    row = store.conn.execute("SELECT * FROM auth_session").fetchone()
    return dict(row)


def test_password_sign_in_stores_the_session_and_secrets_stay_out_of_repr(
    store_path: Path, auth: AuthStandIn
) -> None:
    client = AuthClient(auth.url, "anon-key")
    tokens = client.sign_in_with_password("alice@example.com", PASSWORD)
    assert tokens.user_id == ALICE and tokens.expires_at > time.time()
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    with pytest.raises(AuthRefused, match="Invalid login credentials"):
        client.sign_in_with_password("alice@example.com", "wrong")
    with Store(store_path) as store:
        store_session(store.conn, tokens)
        assert store.signed_in().user_id == ALICE
        assert session_row(store)["refresh_token"] == tokens.refresh_token


def test_a_fresh_token_is_used_as_is_and_an_expiring_one_is_refreshed_first(
    store_path: Path, auth: AuthStandIn
) -> None:
    store = signed_in(store_path, auth)
    first = session_row(store)
    keeper = TokenKeeper(store.conn, store_path, AuthClient(auth.url, "k"))
    assert keeper.access_token() == first["access_token"]
    assert auth.refresh_calls == 0
    # Thirty seconds left: inside the margin, so it is refreshed before use.
    with store.transaction() as conn:
        conn.execute("UPDATE auth_session SET expires_at = ?", (int(time.time()) + 30,))
    token = keeper.access_token()
    now = session_row(store)
    assert token == now["access_token"] != first["access_token"]
    assert now["refresh_token"] != first["refresh_token"]  # rotated, and stored
    assert auth.refresh_calls == 1 and auth.reuse_detected == 0
    store.close()


def test_a_401_refreshes_once_then_the_new_token_is_used(
    store_path: Path, auth: AuthStandIn
) -> None:
    store = signed_in(store_path, auth)
    keeper = TokenKeeper(store.conn, store_path, AuthClient(auth.url, "k"))
    old = keeper.access_token()
    new = keeper.access_token(rejected=old)
    assert new != old and auth.refresh_calls == 1
    # A late 401 for the old token (another request in flight) does not refresh again.
    assert keeper.access_token(rejected=old) == new and auth.refresh_calls == 1
    store.close()


def test_one_refresh_at_a_time_across_threads(store_path: Path, auth: AuthStandIn) -> None:
    store = signed_in(store_path, auth, expires_in=10)  # inside the margin at once
    auth.refresh_delay_s = 0.5
    keeper = TokenKeeper(store.conn, store_path, AuthClient(auth.url, "k"))
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(keeper.access_token()))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert auth.refresh_calls == 1 and auth.reuse_detected == 0
    assert set(got) == {session_row(store)["access_token"]}
    store.close()


CHILD = """
import sys, time
from pathlib import Path
from localstore import Store
from daemon.tokens import TokenKeeper
from remote.auth_client import AuthClient
path, url = Path(sys.argv[1]), sys.argv[2]
with Store(path) as store:
    keeper = TokenKeeper(store.conn, path, AuthClient(url, "k"), margin_s=30)
    print(keeper.access_token())
"""


def test_one_refresh_at_a_time_across_processes(store_path: Path, auth: AuthStandIn) -> None:
    store = signed_in(store_path, auth, expires_in=10)
    auth.refresh_delay_s = 1.5  # longer than the children's start-up spread
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(store_path), auth.url],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    # Each child found the token expiring (10 s left, margin 30 s) but only the first to take
    # the lock refreshed with the old refresh token: nobody reused it, the session lives.
    assert auth.refresh_calls == 1 and auth.reuse_detected == 0
    assert outs == {session_row(store)["access_token"]}
    store.close()


def test_refresh_refused_for_good_signs_out_and_keeps_every_edit(
    store_path: Path, auth: AuthStandIn
) -> None:
    store = signed_in(store_path, auth, expires_in=10)
    conv = store.create_conversation("kept while signed out")
    store.add_message(conv.id, "user", "still here")
    auth.revoke_all()
    keeper = TokenKeeper(store.conn, store_path, AuthClient(auth.url, "k"))
    with pytest.raises(SignedOut, match=SIGN_IN_AGAIN):
        keeper.access_token()
    calls = auth.refresh_calls
    with pytest.raises(SignedOut, match=SIGN_IN_AGAIN):
        keeper.access_token()  # recorded: a revoked token is not tried again
    assert auth.refresh_calls == calls
    assert store.conn.execute("SELECT count(*) FROM messages WHERE dirty").fetchone()[0] == 1
    # Signing in again clears it.
    client = AuthClient(auth.url, "k")
    store_session(store.conn, client.sign_in_with_password("alice@example.com", PASSWORD))
    assert keeper.access_token()
    store.close()


def test_auth_server_down_is_temporary_and_changes_nothing(
    store_path: Path, auth: AuthStandIn
) -> None:
    store = signed_in(store_path, auth, expires_in=10)
    before = session_row(store)
    auth.down = True
    keeper = TokenKeeper(store.conn, store_path, AuthClient(auth.url, "k"))
    with pytest.raises(AuthUnavailable):
        keeper.access_token()
    assert session_row(store) == before
    auth.down = False
    assert keeper.access_token() != before["access_token"]
    store.close()


def test_cli_sign_in_with_email_and_password(tmp_path: Path, store_path: Path,
                                             auth: AuthStandIn) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[local]\npath = "{store_path}"\n[remote]\nauth_url = "{auth.url}"\n'
                      'anon_key = "anon"\n')
    run = [sys.executable, "-m", "daemon", "--config", str(config), "sign-in",
           "--email", "alice@example.com", "--password-stdin"]
    bad = subprocess.run(run, input="nope\n", capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "Invalid login credentials" in bad.stderr
    assert "Traceback" not in bad.stderr
    ok = subprocess.run(run, input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert ALICE in ok.stdout
    with Store(store_path) as store:
        row = session_row(store)
    assert row["user_id"] == ALICE and row["refresh_token"] and row["expires_at"]
    assert row["access_token"] not in ok.stdout + ok.stderr
