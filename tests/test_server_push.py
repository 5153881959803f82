"""`chatsync serve`: exact push and the user's own pull, through a real server process."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import ALICE, BOB
from tests.support.remote_facts import usage, write_counts
from tests.support.servers import (
    HS_SECRET,
    Jwks,
    ServerProc,
    SigningKey,
    batch,
    claims,
    conversation,
    hs_token,
    message,
)

A1, A2 = "conv-a1", "conv-a2"
B1 = "conv-b1"


@pytest.fixture
def keys() -> Iterator[tuple[Jwks, SigningKey, SigningKey]]:
    es, rs = SigningKey.generate("ES256"), SigningKey.generate("RS256")
    jwks = Jwks([es, rs]).start()
    yield jwks, es, rs
    jwks.stop()


@pytest.fixture
def server(tmp_path: Path, remote_dsn: str, keys: tuple[Jwks, SigningKey, SigningKey]
           ) -> Iterator[ServerProc]:
    jwks = keys[0]
    proc = ServerProc(tmp_path, remote_dsn, jwks_url=jwks.url, secret=HS_SECRET).start()
    yield proc
    proc.stop()


def alice_batch() -> dict:
    return batch(
        [conversation(A1, ALICE), conversation(A2, ALICE)],
        [message("m-a1", A1, tokens=5), message("m-a2", A1, role="assistant"),
         message("m-a3", A2)],
    )


def test_push_is_exact_and_a_resend_writes_nothing(
    tmp_path: Path, server: ServerProc, remote: psycopg.Connection,
    keys: tuple[Jwks, SigningKey, SigningKey],
) -> None:
    _, es, rs = keys
    token = es.sign(claims(ALICE, email="alice@example.com"))
    first = server.post("/v1/push", alice_batch(), token)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["conversations"] == {"acked": [{"id": A1, "rev": 1}, {"id": A2, "rev": 1}],
                                     "written": 2, "refused": [], "gone": []}
    assert body["messages"]["written"] == 3 and len(body["messages"]["acked"]) == 3
    assert body["deletions"] == {"acked": []}
    server.stop()  # backends report their write counters when they exit
    after_first = write_counts(remote)
    usage_first = usage(remote)

    # Same batch again, by another key of the project (RS256) and through a new server.
    again = ServerProc(tmp_path, server.dsn, jwks_url=keys[0].url).start()
    try:
        second = again.post("/v1/push", alice_batch(), rs.sign(claims(ALICE)))
        assert second.status_code == 200, second.text
        assert second.json()["conversations"]["written"] == 0
        assert second.json()["messages"]["written"] == 0
        assert len(second.json()["messages"]["acked"]) == 3
    finally:
        again.stop()
    assert write_counts(remote) == after_first
    assert usage(remote) == usage_first
    assert remote.execute("SELECT email FROM profiles WHERE id = %s", (ALICE,)).fetchone() == (
        "alice@example.com",)


def test_hs256_secret_and_gzip_both_ways(server: ServerProc) -> None:
    raw = gzip.compress(json.dumps(alice_batch()).encode())
    pushed = server.post("/v1/push", raw, hs_token(ALICE),
                         headers={"Content-Encoding": "gzip",
                                  "Content-Type": "application/json"})
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["messages"]["written"] == 3
    pulled = server.post("/v1/pull", {"cursor": None, "page_size": 2}, hs_token(ALICE),
                         headers={"Accept-Encoding": "gzip"})
    assert pulled.status_code == 200
    assert pulled.headers["content-encoding"] == "gzip"  # httpx decoded it for us
    page = pulled.json()
    # A full pull is paged by message id: two, then the rest after the last id received.
    assert len(page["messages"]) == 2 and page["more"] and page["message_count"] == 3
    rest = server.post("/v1/pull", {"cursor": None, "page_size": 2, "messages_only": True,
                                    "after_message_id": page["messages"][-1]["id"]},
                       hs_token(ALICE)).json()
    assert rest["conversations"] == [] and not rest["more"]
    assert [m["id"] for m in page["messages"] + rest["messages"]] == ["m-a1", "m-a2", "m-a3"]


def test_pull_gives_the_users_own_rows_and_a_cursor(server: ServerProc) -> None:
    alice, bob = hs_token(ALICE), hs_token(BOB)
    assert server.post("/v1/push", alice_batch(), alice).status_code == 200
    assert server.post("/v1/push", batch([conversation(B1, BOB)],
                                         [message("m-b1", B1)]), bob).status_code == 200

    first = server.post("/v1/pull", {"cursor": None, "page_size": 100}, alice).json()
    assert first["changed"] and first["full"]
    assert sorted(c["id"] for c in first["conversations"]) == [A1, A2]
    assert {c["user_id"] for c in first["conversations"]} == {ALICE}
    assert sorted(m["id"] for m in first["messages"]) == ["m-a1", "m-a2", "m-a3"]
    m = next(m for m in first["messages"] if m["id"] == "m-a1")
    # The store's shape: ISO text timestamps, 0/1 flags, the deleted marker.
    assert m["timestamp"] == "2025-07-17T06:50:00.000Z" and m["deleted"] == 0 and m["error"] == 0
    assert first["conversations"][0]["created_at"] == "2025-07-17T06:49:47.703Z"

    nothing = server.post("/v1/pull", {"cursor": first["cursor"]}, alice).json()
    assert nothing == {"changed": False, "full": False, "cursor": first["cursor"],
                       "more": False, "message_count": 0, "conversations": [], "messages": []}

    # Bob's later changes never reach Alice; her own (from another device) do, and the
    # device that pushed them (same origin) skips its own message echoes.
    server.post("/v1/push", batch([], [message("m-b2", B1)]), bob)
    server.post("/v1/push", batch([], [message("m-a4", A1)], origin="deviceA1"), alice)
    later = server.post("/v1/pull", {"cursor": first["cursor"]}, alice).json()
    assert later["changed"] and not later["full"]
    assert [m["id"] for m in later["messages"]] == ["m-a4"]
    own = server.post("/v1/pull", {"cursor": first["cursor"], "origin": "deviceA1"},
                      alice).json()
    assert own["messages"] == [] and [c["id"] for c in own["conversations"]] == [A1]
    bobs = server.post("/v1/pull", {"cursor": None}, bob).json()
    assert sorted(m["id"] for m in bobs["messages"]) == ["m-b1", "m-b2"]


def test_deletions_and_gone_rows(server: ServerProc, remote: psycopg.Connection) -> None:
    alice = hs_token(ALICE)
    server.post("/v1/push", alice_batch(), alice)
    deleted = server.post("/v1/push", batch(deletions=[
        {"kind": "message", "id": "m-a3", "rev": 4},
        {"kind": "conversation", "id": A2, "rev": 5}]), alice)
    assert deleted.status_code == 200
    assert deleted.json()["deletions"]["acked"] == [
        {"kind": "message", "id": "m-a3", "rev": 4}, {"kind": "conversation", "id": A2, "rev": 5}]
    assert remote.execute("SELECT id FROM chat_sessions").fetchall() == [(A1,)]
    # A device that had A2 synced and edited it meanwhile: not revived, reported gone.
    edited = server.post("/v1/push", batch([conversation(A2, ALICE, rev=6, was_synced=1,
                                                         title="edited")]), alice).json()
    assert edited["conversations"] == {"acked": [], "written": 0, "refused": [], "gone": [A2]}
    assert remote.execute("SELECT count(*) FROM chat_sessions").fetchone() == (1,)


def test_unstorable_row_is_refused_alone(server: ServerProc, remote: psycopg.Connection
                                         ) -> None:
    rows = [message("m-ok", A1), message("m-nul", A1, content="a\x00b")]
    answer = server.post("/v1/push", batch([conversation(A1, ALICE)], rows),
                         hs_token(ALICE)).json()
    assert [r["id"] for r in answer["messages"]["refused"]] == ["m-nul"]
    assert "NUL" in answer["messages"]["refused"][0]["reason"]
    assert answer["messages"]["acked"] == [{"id": "m-ok", "rev": 1}]
    assert remote.execute("SELECT id FROM chat_messages").fetchall() == [("m-ok",)]
