"""What the server process needs from `[server]`, checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.config import ConfigError, ServerConfig

NO_KEY = (
    "chatsync serve checks every request's access token and has no key to check it with: "
    "set server.jwks_url to your project's JWKS URL "
    "(https://<project>.supabase.co/auth/v1/.well-known/jwks.json), or put the project's "
    "legacy JWT secret in the environment variable CHATSYNC_SERVER_JWT_SECRET; "
    "it never runs without authentication."
)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    dsn: str = field(repr=False)  # may hold a password: shown only through mask_dsn
    jwks_url: str
    jwt_secret: str = field(repr=False)
    audience: str
    issuer: str
    pool_size: int
    max_body_bytes: int
    pool_timeout_s: float
    jwks_refetch_s: float
    listen_dsn: str = field(repr=False, default="")  # "" = dsn
    live_wait_max_s: float = 30.0
    feed_retention_s: float = 30 * 24 * 3600.0
    feed_prune_interval_s: float = 3600.0

    @property
    def live_dsn(self) -> str:
        """The session connection the listener uses (LISTEN needs one, not a pooler)."""
        return self.listen_dsn or self.dsn

    @classmethod
    def from_config(cls, server: ServerConfig, dsn: str) -> ServerSettings:
        require_key(server)
        return cls(
            dsn=dsn, jwks_url=server.jwks_url,
            jwt_secret=server.jwt_secret.get_secret_value(), audience=server.audience,
            issuer=server.issuer, pool_size=server.pool_size,
            max_body_bytes=server.max_body_bytes, pool_timeout_s=server.pool_timeout_seconds,
            jwks_refetch_s=server.jwks_refetch_seconds, listen_dsn=server.listen_dsn,
            live_wait_max_s=server.live_wait_max_seconds,
            feed_retention_s=server.feed_retention_seconds,
            feed_prune_interval_s=server.feed_prune_interval_seconds,
        )


def require_key(server: ServerConfig) -> None:
    """Refuse to run a server that could not authenticate anyone."""
    if not server.jwks_url and not server.jwt_secret.get_secret_value():
        raise ConfigError(NO_KEY)
