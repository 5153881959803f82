"""A small local stand-in of the auth server's documented token contract (GoTrue).

`POST /token?grant_type=password` and `?grant_type=refresh_token`, each answering a
session (access_token, refresh_token, expires_in, expires_at, user). Refresh tokens rotate:
each may be used once; using one again revokes the whole session, as Supabase does.
Access tokens come from *make_access_token* (tests pass a real JWT signer), else opaque.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class _Session:
    user_id: str
    email: str
    revoked: bool = False


@dataclass
class AuthStandIn:
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # email -> (id, password)
    expires_in: int = 3600
    make_access_token: Callable[[str, int], str] | None = None
    refresh_calls: int = 0
    reuse_detected: int = 0
    down: bool = False  # answer 503 to everything
    refresh_delay_s: float = 0.0  # a slow server, so that concurrent refreshes overlap
    _tokens: dict[str, tuple[_Session, bool]] = field(default_factory=dict)  # token -> (s, used)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> AuthStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                grant = parse_qs(urlsplit(self.path).query).get("grant_type", [""])[0]
                status, answer = standin.answer(grant, body, self.headers.get("apikey"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/auth/v1"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, grant: str, body: dict[str, Any], apikey: str | None
               ) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"error": "unavailable"}
        if not apikey:
            return 401, {"msg": "No API key found in request"}
        with self._lock:
            if grant == "password":
                found = self.users.get(body.get("email", ""))
                if found is None or found[1] != body.get("password"):
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Invalid login credentials"}
                return 200, self._issue(_Session(found[0], body["email"]))
            if grant == "refresh_token":
                time.sleep(self.refresh_delay_s)
                self.refresh_calls += 1
                entry = self._tokens.get(body.get("refresh_token", ""))
                if entry is None:
                    return 400, {"error": "invalid_grant", "error_description":
                                 "Invalid Refresh Token: Refresh Token Not Found"}
                session, used = entry
                if used:
                    session.revoked = True
                    self.reuse_detected += 1
                if session.revoked:
                    return 400, {"error": "invalid_grant", "error_description":
                                 "Invalid Refresh Token: Already Used"}
                self._tokens[body["refresh_token"]] = (session, True)
                return 200, self._issue(session)
        return 400, {"error": "unsupported_grant_type"}

    def revoke_all(self) -> None:
        with self._lock:
            for session, _ in self._tokens.values():
                session.revoked = True

    def _issue(self, session: _Session) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(12)
        self._tokens[refresh] = (session, False)
        expires_at = int(time.time()) + self.expires_in
        access = (self.make_access_token(session.user_id, expires_at)
                  if self.make_access_token else secrets.token_urlsafe(24))
        return {"access_token": access, "token_type": "bearer", "expires_in": self.expires_in,
                "expires_at": expires_at, "refresh_token": refresh,
                "user": {"id": session.user_id, "email": session.email}}
