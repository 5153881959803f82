"""The device's side of the app's auth server (Supabase Auth): sign in, refresh a session.

Only the two grants a sync daemon needs, as GoTrue documents them:
`POST {auth_url}/token?grant_type=password` with `{"email", "password"}`, and
`POST {auth_url}/token?grant_type=refresh_token` with `{"refresh_token"}`, each with the
project's public `apikey` header. A refresh returns a new access token and a *rotated*
refresh token; the old one must never be used again (reuse revokes the session).

Errors never carry a token: `AuthRefused` (the server said no; a person must sign in) and
`AuthUnavailable` (network or server trouble; retry later).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

TIMEOUT_S = 10.0


class AuthRefused(Exception):
    """The auth server refused the credentials or the session, for good."""


class AuthUnavailable(Exception):
    """The auth server could not be reached or failed; worth retrying later.
    `unreachable`: it could not be reached at all (the daemon then shows "offline")."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class Tokens:
    """A Supabase session as the store keeps it; the tokens stay out of repr."""

    user_id: str
    email: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: int  # Unix seconds


class AuthClient:
    def __init__(
        self, auth_url: str, anon_key: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=auth_url.rstrip("/"), timeout=TIMEOUT_S, transport=transport,
            headers={"apikey": anon_key, "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def sign_in_with_password(self, email: str, password: str) -> Tokens:
        return self._grant("password", {"email": email, "password": password})

    def refresh(self, refresh_token: str) -> Tokens:
        return self._grant("refresh_token", {"refresh_token": refresh_token})

    def _grant(self, grant: str, body: dict[str, str]) -> Tokens:
        try:
            r = self._http.post("/token", params={"grant_type": grant}, json=body)
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"cannot reach the auth server: {type(exc).__name__}",
                                  unreachable=True) from None
        if r.status_code >= 500 or r.status_code == 429:
            raise AuthUnavailable(f"the auth server answered {r.status_code}")
        if r.status_code != 200:
            raise AuthRefused(f"the auth server refused ({r.status_code}: {_reason(r)})")
        try:
            data = r.json()
            user = data["user"]
            expires_at = data.get("expires_at") or int(time.time()) + int(data["expires_in"])
            return Tokens(
                user_id=str(user["id"]).lower(), email=str(user.get("email") or ""),
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]), expires_at=int(expires_at),
            )
        except (ValueError, KeyError, TypeError):
            raise AuthUnavailable("the auth server's answer was not a session") from None


def _reason(r: httpx.Response) -> str:
    """The server's own short reason (GoTrue: error_description, msg or error)."""
    try:
        data: Any = r.json()
    except ValueError:
        return "no reason given"
    if not isinstance(data, dict):
        return "no reason given"
    text = data.get("error_description") or data.get("msg") or data.get("error") or ""
    return str(text)[:200] or "no reason given"
