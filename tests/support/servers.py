"""Real `chatsync serve` processes, real signing keys and a local JWKS endpoint, and push
bodies in the store's shape: for the tests and the benchmarks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support.procs import ROOT, child_env, free_port, wait_for

AUDIENCE = "authenticated"
HS_SECRET = "test-only-hs256-secret-that-is-long-enough-0123456789"


@dataclass
class SigningKey:
    """A private key the test signs with, and the public JWK the JWKS serves for it."""

    alg: str
    kid: str
    private: Any

    @classmethod
    def generate(cls, alg: str, kid: str | None = None) -> SigningKey:
        if alg == "ES256":
            private: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(alg, kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private)

    def jwk(self) -> dict[str, Any]:
        algo = {"ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}.get(self.alg, RSAAlgorithm)
        data = algo.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg,
                          headers={"kid": self.kid, **header})


def claims(sub: str | None, *, aud: str = AUDIENCE, exp_in: float = 3600,
           email: str = "", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    data: dict[str, Any] = {"aud": aud, "exp": now + int(exp_in), "iat": now,
                            "role": "authenticated", "email": email, **extra}
    if sub is not None:
        data["sub"] = sub
    return data


def hs_token(sub: str | None, secret: str = HS_SECRET, **kw: Any) -> str:
    return jwt.encode(claims(sub, **kw), secret, algorithm="HS256")


@dataclass
class Jwks:
    """A JWKS endpoint on a local port, like the auth server's; counts its fetches."""

    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0

    def start(self) -> Jwks:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": [k.jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/auth/v1/.well-known/jwks.json"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_server_config(path: Path, *, port: int, dsn: str, **server: Any) -> Path:
    """A config for `chatsync serve` on 127.0.0.1:*port*; *server* are more `[server]`
    settings. The `[local]` store it names is never used."""
    settings = {"listen": f"127.0.0.1:{port}", "dsn": dsn, **server}
    lines = ["[local]", f"path = {json.dumps(str(path.parent / 'srv-store' / 'x.db'))}",
             "[daemon]", 'log_level = "warning"', "[server]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def server_env(secret: str = "") -> dict[str, str]:
    """`child_env()`, and *secret* (HS256 tokens) in CHATSYNC_SERVER_JWT_SECRET."""
    return child_env(CHATSYNC_SERVER_JWT_SECRET=secret) if secret else child_env()


class ServerProc:
    """One `python -m daemon serve` on a free port, with its own config file and log.

    *server* are `[server]` settings; *secret* is handed over in CHATSYNC_SERVER_JWT_SECRET
    (HS256 tokens), as a deployment with the project's legacy JWT secret would. Nothing of
    the caller's own chatsync settings leaks into the server.
    """

    def __init__(self, workdir: Path, dsn: str, *, jwks_url: str = "", secret: str = "",
                 **server: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.dsn = dsn
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = write_server_config(workdir / f"server-{self.port}.toml", port=self.port,
                                          dsn=dsn, jwks_url=jwks_url, **server)
        self.log_path = workdir / f"server-{self.port}.log"
        self.env = server_env(secret)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "daemon", "--config", str(self.config), *args]

    def start(self, *, wait: bool = True, workers: int = 1, timeout: float = 30) -> ServerProc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command("serve", "--workers", str(workers)), cwd=ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            try:
                wait_for(self._answers, timeout, "the server to answer")
            except AssertionError as exc:
                if self.proc.poll() is not None:  # exited: the message has its log
                    raise
                self.stop()
                raise AssertionError(f"{exc}:\n{self.log_tail()}") from None
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
        try:
            httpx.get(self.url + "/health", timeout=5)
            return True
        except httpx.TransportError:
            return False

    def post(self, path: str, body: Any, token: str | None = None,
             **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        if isinstance(body, bytes | str):
            return httpx.post(self.url + path, content=body, headers=headers, timeout=30, **kw)
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30, **kw)

    def rss_kb(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# Rows in the store's shape (localstore.outbox PENDING_*), as a device would send them.

def conversation(cid: str, user_id: str, *, rev: int = 1, was_synced: int = 0,
                 title: str = "Chat") -> dict[str, Any]:
    return {"id": cid, "user_id": user_id, "title": title,
            "created_at": "2025-07-17T06:49:47.703Z", "updated_at": "2025-07-17T06:49:47.703Z",
            "is_active": 1, "was_synced": was_synced, "rev": rev}


def message(mid: str, cid: str, *, rev: int = 1, was_synced: int = 0, content: str = "hi",
            role: str = "user", tokens: int = 10) -> dict[str, Any]:
    return {"id": mid, "conversation_id": cid, "role": role, "content": content,
            "model": "gpt-4o", "total_tokens": tokens, "input_tokens": tokens,
            "output_tokens": 0, "user_message_id": None, "content_type": "text",
            "elapsed_time": 0, "completion_id": None,
            "timestamp": "2025-07-17T06:50:00.000Z", "error": 0, "error_message": None,
            "was_synced": was_synced, "rev": rev}


def batch(conversations: list[dict[str, Any]] = (),  # type: ignore[assignment]
          messages: list[dict[str, Any]] = (),  # type: ignore[assignment]
          deletions: list[dict[str, Any]] = (),  # type: ignore[assignment]
          **extra: Any) -> dict[str, Any]:
    return {"conversations": list(conversations), "messages": list(messages),
            "deletions": list(deletions), **extra}
