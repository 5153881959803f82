"""Verifying the users' Supabase access tokens (PyJWT; no hand-written crypto).

Keys come from the project's JWKS (asymmetric: ES256, RS256, EdDSA; cached, refetched on an
unknown kid at most once per `refetch_s`), or the legacy shared HS256 secret. Each key is
used only with its own algorithm family, so neither `alg: none` nor algorithm confusion (a
token "signed" with HS256 using a public key as the secret) can pass. With both configured
(a project migrating its keys), the token's header picks which one checks it.

The user id for row-level security is the verified `sub`, and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from jwt import PyJWKClient

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

ASYMMETRIC = ("ES256", "RS256", "EdDSA")
SYMMETRIC = ("HS256",)
LEEWAY_S = 30  # clock skew between the auth server, the device and this server
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")


class AuthError(Exception):
    """The request is not authenticated; `reason` is safe to show to the client."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code  # short label for metrics
        self.reason = reason


class KeysUnavailable(Exception):
    """The JWKS endpoint could not be read: the server's trouble, not the token's."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str  # lowercase, as PostgreSQL prints a uuid and the store keeps it
    email: str


class Verifier:
    def __init__(
        self, *, jwks_url: str = "", secret: str = "", audience: str = "authenticated",
        issuer: str = "", refetch_s: float = 30, leeway_s: float = LEEWAY_S,
    ) -> None:
        if not jwks_url and not secret:
            raise ValueError("a JWKS URL or a secret is needed")
        self._jwks = (
            PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=600, timeout=10,
                        cooldown_duration=refetch_s)
            if jwks_url else None
        )
        self._secret = secret
        self._audience = audience
        self._issuer = issuer or None
        self._leeway = leeway_s

    def warm_up(self) -> str | None:
        """Fetch the JWKS now; a sentence for the log when it cannot be read, else None."""
        if self._jwks is None:
            return None
        try:
            self._jwks.get_jwk_set()
        except (jwt.PyJWTError, ValueError) as exc:
            return f"cannot read the signing keys at {self._jwks.uri}: {exc}"
        return None

    def verify(self, authorization: str | None) -> Identity:
        """The user an `Authorization` header proves; raises AuthError or KeysUnavailable.

        Blocking (a JWKS fetch may happen): call it from a worker thread.
        """
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        key, algorithms = self._key_for(token, alg, header.get("kid"))
        required = ["exp", "sub", "aud"] + (["iss"] if self._issuer else [])
        try:
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=self._audience,
                issuer=self._issuer, leeway=self._leeway,
                options={"require": required, "verify_sub": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "the token has expired; refresh it") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience", "the token is not meant for this server (aud)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("issuer", "the token was issued by another project (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("claims", f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("signature", "the token's signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("algorithm", f"tokens signed with {_shown(alg)} are not accepted")\
                from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("invalid", "the token is not valid") from None
        return _identity(claims)

    def _key_for(self, token: str, alg: object, kid: object
                 ) -> tuple[AllowedPublicKeys | str, list[str]]:
        if alg in SYMMETRIC and self._secret:
            return self._secret, list(SYMMETRIC)
        if alg in ASYMMETRIC and self._jwks is not None:
            if not isinstance(kid, str) or not kid:
                raise AuthError("kid", "the token names no signing key (kid)")
            try:
                jwk = self._jwks.get_signing_key(kid)
            except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as exc:
                raise KeysUnavailable(str(exc)) from None
            except jwt.PyJWKClientError:
                raise AuthError("kid", "the token's signing key is not one of the project's")\
                    from None
            # The key's own algorithm only: an RSA key never checks an ES256 token.
            key_alg = jwk.algorithm_name
            if key_alg != alg:
                raise AuthError("algorithm",
                                f"the key {_shown(kid)} does not sign {_shown(alg)}")
            return jwk.key, [key_alg]
        raise AuthError("algorithm", f"tokens signed with {_shown(alg)} are not accepted")


def _shown(value: object) -> str:
    # Header values come from the attacker: echo a short, header-safe version only.
    return re.sub(r"[^A-Za-z0-9_.:-]", "?", str(value))[:40]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing", "no Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing", "the Authorization header is not a Bearer token")
    return token.strip()


def _identity(claims: dict[str, object]) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _UUID.match(sub):
        raise AuthError("claims", "the token's sub is not a user id (a UUID)")
    email = claims.get("email")
    return Identity(sub.lower(), email if isinstance(email, str) else "")
