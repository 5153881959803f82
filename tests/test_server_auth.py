"""Attacks on `chatsync serve`: each refused with a clear status, and nothing written."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import ALICE, BOB
from tests.support.procs import ROOT
from tests.support.remote_facts import usage
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


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    keys = Jwks([SigningKey.generate(alg) for alg in ("ES256", "RS256", "EdDSA")]).start()
    yield keys
    keys.stop()


@pytest.fixture
def server(tmp_path: Path, remote_dsn: str, jwks: Jwks) -> Iterator[ServerProc]:
    """JWKS only (no HS256 secret), and a refetch on any unknown kid."""
    proc = ServerProc(tmp_path, remote_dsn, jwks_url=jwks.url, jwks_refetch_seconds=0).start()
    yield proc
    proc.stop()


def _unsigned(payload: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def _rs256_public_pem_as_hmac_secret(jwks: Jwks) -> str:
    # The classic confusion: HS256 "signed" with the RSA public key every client can read.
    pem = jwks.keys[1].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "kid": jwks.keys[1].kid, "typ": "JWT"}
    signing_input = ".".join(
        base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode()
        for p in (header, claims(ALICE)))
    import hashlib
    import hmac

    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


ATTACKS: dict[str, tuple[Callable[[Jwks], str | None], str]] = {
    "no token": (lambda k: None, "no Authorization"),
    "not a JWT": (lambda k: "not.a.jwt", "not a well-formed JWT"),
    "signed by another key, unknown kid": (
        lambda k: SigningKey.generate("ES256").sign(claims(ALICE)), "not one of the project's"),
    "signed by another key, the project's kid": (
        lambda k: SigningKey.generate("ES256", kid=k.keys[0].kid).sign(claims(ALICE)),
        "signature does not verify"),
    "alg none": (lambda k: _unsigned(claims(ALICE)), "none are not accepted"),
    "HS256 where JWKS keys are expected": (
        lambda k: hs_token(ALICE), "HS256 are not accepted"),
    "HS256 signed with the RSA public key": (
        _rs256_public_pem_as_hmac_secret, "HS256 are not accepted"),
    "expired": (lambda k: k.keys[0].sign(claims(ALICE, exp_in=-120)), "expired"),
    "wrong audience": (lambda k: k.keys[1].sign(claims(ALICE, aud="anon")), "(aud)"),
    "no sub": (lambda k: k.keys[0].sign(claims(None)), "no sub claim"),
    "sub not a user id": (lambda k: k.keys[0].sign(claims("service_role")), "not a user id"),
    "header injection in alg": (
        lambda k: _unsigned(claims(ALICE)).replace(
            _unsigned(claims(ALICE)).split(".")[0],
            base64.urlsafe_b64encode(b'{"alg": "HS256\\r\\nX-Evil: 1"}').rstrip(b"=").decode()),
        "HS256??X-Evil:?1 are not accepted"),
    "ES256 key claimed as RS256": (
        lambda k: jwt.encode(claims(ALICE), k.keys[1].private, algorithm="RS256",
                             headers={"kid": k.keys[0].kid}), "does not sign RS256"),
}


def test_each_attack_is_refused_with_401_and_a_reason(
    server: ServerProc, jwks: Jwks, remote: psycopg.Connection
) -> None:
    push = batch([conversation("conv-x", ALICE)], [message("m-x", "conv-x")])
    for name, (make, reason) in ATTACKS.items():
        token = make(jwks)
        for path, body in (("/v1/push", push), ("/v1/pull", {"cursor": None})):
            answer = server.post(path, body, token)
            assert answer.status_code == 401, (name, answer.text)
            assert answer.json()["error"] == "unauthorized"
            assert reason in answer.json()["detail"], (name, answer.json())
            assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
            assert "x-evil" not in answer.headers
    for table in ("profiles", "chat_sessions", "chat_messages", "user_usage_daily"):
        assert remote.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    # The same push with a real token works, by either of the project's keys.
    for key in jwks.keys:
        assert server.post("/v1/push", push, key.sign(claims(ALICE))).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    assert 'chatsync_server_auth_failures_total{reason="signature"} 2.0' in text
    assert 'chatsync_server_requests_total{route="/v1/push",status="401"} 13.0' in text
    assert 'chatsync_server_requests_total{route="/v1/push",status="200"} 3.0' in text
    assert "chatsync_server_pool_in_use 0.0" in text
    assert "chatsync_server_request_seconds_bucket" in text
    assert ALICE not in text and server.dsn not in text


def test_a_user_cannot_write_or_read_another_users_rows(
    server: ServerProc, jwks: Jwks, remote: psycopg.Connection
) -> None:
    alice, bob = jwks.keys[0].sign(claims(ALICE)), jwks.keys[1].sign(claims(BOB))
    bobs = batch([conversation("conv-b1", BOB, title="Bob's")],
                 [message("m-b1", "conv-b1", content="bob's secret", tokens=7)])
    assert server.post("/v1/push", bobs, bob).status_code == 200
    before = {t: remote.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
              for t in ("chat_sessions", "chat_messages")}
    bob_usage = _usage_of(remote, BOB)

    attack = batch(
        [conversation("conv-new", BOB),  # claims Bob as owner
         conversation("conv-b1", ALICE, title="taken"),  # Bob's conversation id
         conversation("conv-b1", BOB, rev=2, was_synced=1, title="renamed")],
        [message("m-into-b1", "conv-b1", tokens=1000),  # into Bob's conversation
         message("m-b1", "conv-b1", content="overwritten", was_synced=1)],  # Bob's message
        [{"kind": "conversation", "id": "conv-b1", "rev": 9},
         {"kind": "message", "id": "m-b1", "rev": 9}],
    )
    answer = server.post("/v1/push", attack, alice)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    refused = {r["id"] for r in result["conversations"]["refused"]}
    gone_or_refused = refused | set(result["conversations"]["gone"])
    assert {"conv-new", "conv-b1"} <= gone_or_refused
    assert result["conversations"]["acked"] == [] and result["conversations"]["written"] == 0
    assert any("row-level security" in r["reason"] for r in result["conversations"]["refused"])
    assert result["messages"]["acked"] == [] and result["messages"]["written"] == 0
    after = {t: remote.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
             for t in ("chat_sessions", "chat_messages")}
    assert after == before
    assert _usage_of(remote, BOB) == bob_usage

    pulled = server.post("/v1/pull", {"cursor": None}, alice).json()
    assert pulled["conversations"] == [] and pulled["messages"] == []


def _usage_of(remote: psycopg.Connection, user: str) -> dict:
    figures = usage(remote)
    return {
        "daily": {k: v for k, v in figures["daily"].items() if k[0] == user},
        "profiles": figures["profiles"].get(user),
        "summary": figures["summary"].get(user),
    }


def test_an_unknown_kid_refetches_the_jwks_once_and_a_rotated_key_works(
    server: ServerProc, jwks: Jwks
) -> None:
    old = jwks.keys[0]
    assert server.post("/v1/pull", {}, old.sign(claims(ALICE))).status_code == 200
    fetched = jwks.fetches
    rotated = SigningKey.generate("ES256")
    token = rotated.sign(claims(ALICE))
    refused = server.post("/v1/pull", {}, token)
    assert refused.status_code == 401 and jwks.fetches == fetched + 1  # one refetch
    jwks.keys.append(rotated)  # the project rotates its keys
    assert server.post("/v1/pull", {}, token).status_code == 200
    assert jwks.fetches == fetched + 2
    for _ in range(3):  # known now: no more fetches
        assert server.post("/v1/pull", {}, token).status_code == 200
    assert server.post("/v1/pull", {}, old.sign(claims(ALICE))).status_code == 200
    assert jwks.fetches == fetched + 2


def test_made_up_kids_do_not_flood_the_jwks_endpoint(
    tmp_path: Path, remote_dsn: str, jwks: Jwks
) -> None:
    proc = ServerProc(tmp_path, remote_dsn, jwks_url=jwks.url).start()  # default cooldown
    try:
        for _ in range(5):
            token = SigningKey.generate("ES256").sign(claims(ALICE))
            assert proc.post("/v1/pull", {}, token).status_code == 401
        assert jwks.fetches <= 2  # the first fetch, and at most one refetch
    finally:
        proc.stop()


def test_hs256_only_server_refuses_asymmetric_and_wrong_secret(
    tmp_path: Path, remote_dsn: str, jwks: Jwks
) -> None:
    proc = ServerProc(tmp_path, remote_dsn, secret=HS_SECRET, issuer="https://x.test/auth/v1"
                      ).start()
    try:
        good = hs_token(ALICE, iss="https://x.test/auth/v1")
        assert proc.post("/v1/pull", {}, good).status_code == 200
        cases = {
            jwks.keys[0].sign(claims(ALICE, iss="https://x.test/auth/v1")): "ES256 are not",
            hs_token(ALICE, secret="another-secret-another-secret-another-1",
                     iss="https://x.test/auth/v1"): "signature does not verify",
            hs_token(ALICE, iss="https://evil.test/auth/v1"): "(iss)",
            hs_token(ALICE): "no iss claim",
        }
        for token, reason in cases.items():
            answer = proc.post("/v1/pull", {}, token)
            assert answer.status_code == 401 and reason in answer.json()["detail"], answer.text
        assert HS_SECRET not in proc.log()
    finally:
        proc.stop()


def test_serve_with_no_key_refuses_to_start(tmp_path: Path, remote_dsn: str) -> None:
    proc = ServerProc(tmp_path, remote_dsn)
    done = subprocess.run(proc.command("serve"), cwd=ROOT, env=proc.env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "set server.jwks_url" in done.stderr
    assert "CHATSYNC_SERVER_JWT_SECRET" in done.stderr
    assert "never runs without authentication" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_jwks_is_a_503_not_a_401(tmp_path: Path, remote_dsn: str) -> None:
    from tests.support.procs import free_port

    url = f"http://127.0.0.1:{free_port()}/auth/v1/.well-known/jwks.json"
    proc = ServerProc(tmp_path, remote_dsn, jwks_url=url).start()
    try:
        token = SigningKey.generate("ES256").sign(claims(ALICE))
        answer = proc.post("/v1/pull", {}, token)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert answer.json()["detail"] == "the signing keys cannot be fetched; retry later"
        assert "cannot read the signing keys" in proc.log()
    finally:
        proc.stop()
