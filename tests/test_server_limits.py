"""`chatsync serve` under abuse and outage: 413 without reading, 422 naming the field, 503."""

from __future__ import annotations

import contextlib
import gzip
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support import ALICE
from tests.support.procs import free_port
from tests.support.servers import (
    HS_SECRET,
    ServerProc,
    batch,
    conversation,
    hs_token,
    message,
)

LIMIT = 1024 * 1024
FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture
def server(tmp_path: Path, remote_dsn: str) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET, max_body_bytes=LIMIT).start()
    yield proc
    proc.stop()


def _raw_request(port: int, head: str, chunks: Iterator[bytes]) -> bytes:
    """Send *head* then *chunks* until the server answers (or closes); its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        return answer


def _zeros(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"\0" * size


def _chunked(total: int) -> Iterator[bytes]:
    for block in _zeros(total):
        yield f"{len(block):x}\r\n".encode() + block + b"\r\n"
    yield b"0\r\n\r\n"


def _head(server: ServerProc, **headers: str) -> str:
    lines = ["POST /v1/push HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Authorization: Bearer {hs_token(ALICE)}", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_a_50mb_body_is_refused_with_413_without_the_server_holding_it(
    server: ServerProc, remote: psycopg.Connection
) -> None:
    warm = server.post("/v1/push", batch([conversation("c", ALICE)]), hs_token(ALICE))
    assert warm.status_code == 200
    rss_before = server.rss_kb()
    bomb = gzip.compress(b"[" + b" " * FIFTY_MB + b"]", compresslevel=9)
    assert len(bomb) < LIMIT  # small on the wire, 50 MB inflated
    cases = {
        "declared": (_head(server, Content_Length=str(FIFTY_MB)), _zeros(FIFTY_MB)),
        "chunked": (_head(server, Transfer_Encoding="chunked"), _chunked(FIFTY_MB)),
        "gzip bomb": (_head(server, Content_Length=str(len(bomb)), Content_Encoding="gzip"),
                      iter([bomb])),
    }
    for name, (head, body) in cases.items():
        answer = _raw_request(server.port, head, body)
        assert answer.startswith(b"HTTP/1.1 413"), (name, answer[:300])
        assert b"connection: close" in answer.lower()  # the rest is never read
    growth_kb = server.rss_kb() - rss_before
    assert growth_kb < 10 * 1024, f"RSS grew by {growth_kb} kB"
    assert remote.execute("SELECT count(*) FROM chat_messages").fetchone() == (0,)
    assert server.post("/v1/pull", {}, hs_token(ALICE)).status_code == 200  # still serving


@pytest.mark.parametrize(("body", "field", "words"), [
    (b"{not json", "body", "JSON"),
    (b"[]", "body", "object"),
    (b'{"conversations": {}}', "conversations", "array"),
    (b'{"messages": [{"id": "m"}]}', "messages[0].conversation_id", "required"),
    (b'{"conversations": [], "colour": 1}', "colour", "not permitted"),
    (b'{"deletions": [{"kind": "profile", "id": "x", "rev": 1}]}', "deletions[0].kind",
     "conversation"),
], ids=["syntax", "not an object", "wrong type", "missing", "unknown key", "bad kind"])
def test_a_malformed_push_is_a_422_naming_the_field(
    server: ServerProc, body: bytes, field: str, words: str
) -> None:
    answer = server.post("/v1/push", body, hs_token(ALICE),
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["detail"].startswith(field) and words in answer.json()["detail"]


def test_malformed_pull_and_encoding_are_422(server: ServerProc) -> None:
    token = hs_token(ALICE)
    cases = [
        ({"cursor": "DROP TABLE"}, "cursor"),
        ({"cursor": "1:2:3,x"}, "cursor"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": "10"}, "page_size"),
        ({"origin": "a b"}, "origin"),
    ]
    for body, field in cases:
        answer = server.post("/v1/pull", body, token)
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    bad_gzip = server.post("/v1/pull", b"not gzip", token,
                           headers={"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 422 and "gzip" in bad_gzip.json()["detail"]
    cut = server.post("/v1/pull", gzip.compress(b'{"cursor": null}')[:-4], token,
                      headers={"Content-Encoding": "gzip"})
    assert cut.status_code == 422 and "truncated" in cut.json()["detail"]
    brotli = server.post("/v1/pull", b"{}", token, headers={"Content-Encoding": "br"})
    assert brotli.status_code == 422 and "not supported" in brotli.json()["detail"]


def test_database_down_is_503_with_retry_after(tmp_path: Path) -> None:
    closed = f"host=127.0.0.1 port={free_port()} user=chatsync password=hunter2 dbname=x"
    proc = ServerProc(tmp_path, closed, secret=HS_SECRET, pool_timeout_seconds=1).start()
    try:
        health = httpx.get(proc.url + "/health", timeout=30)
        assert health.status_code == 503 and health.headers["retry-after"] == "5"
        for path, body in (("/v1/push", batch([conversation("c", ALICE)],
                                              [message("m", "c")])),
                           ("/v1/pull", {"cursor": None})):
            answer = proc.post(path, body, hs_token(ALICE))
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "5"
            assert answer.json() == {"error": "unavailable",
                                     "detail": "the database is unreachable or busy; retry later"}
        assert "hunter2" not in proc.log()
        assert "hunter2" not in httpx.get(proc.url + "/metrics").text
    finally:
        proc.stop()


def test_a_database_refusal_is_a_500_without_its_text(
    tmp_path: Path, admin_dsn: str
) -> None:
    from tests.support import pg

    name = pg.create_database(admin_dsn, "chatsync_bare")  # no migrations: no tables
    proc = ServerProc(tmp_path, pg.dsn_for(admin_dsn, name), secret=HS_SECRET).start()
    try:
        answer = proc.post("/v1/push", batch([conversation("c", ALICE)]), hs_token(ALICE))
        assert answer.status_code == 500
        assert answer.json() == {"error": "server_error",
                                 "detail": "the server could not complete the request"}
        assert "run `chatsync migrate`" in proc.log()  # the operator is told why
    finally:
        proc.stop()
        pg.drop_database(admin_dsn, name)
