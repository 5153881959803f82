"""Configuration: `config.toml`, then `CHATSYNC_<SECTION>_<KEY>` environment overrides.

The file is found by `--config PATH`, else `$CHATSYNC_CONFIG`, else `config.toml` in the
user config dir; with none of these, the documented defaults apply. Unknown keys and wrong
types are errors that name the key.
"""

from __future__ import annotations

import os
import tomllib
import warnings
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

APP = "chatsync"


class ConfigError(Exception):
    """The configuration is unusable; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LocalConfig(_Section):
    # "" means the default: chatsync.db in the user data dir
    path: str = ""

    @property
    def resolved_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        return Path(platformdirs.user_data_dir(APP)) / "chatsync.db"


class RemoteConfig(_Section):
    # "" means the embedded PostgreSQL, kept in the user data dir (direct mode)
    dsn: str = ""
    # the sync server (`chatsync serve`), e.g. "https://sync.example.com"; when set, the
    # device holds no database credential and signs in as its user instead of using dsn
    url: str = ""
    # the app's auth server (Supabase: "https://<project>.supabase.co/auth/v1") and its
    # public anon key, for `chatsync sign-in --email` and refreshing the session
    auth_url: str = ""
    anon_key: str = ""

    @property
    def label(self) -> str:
        """Which remote, for logs and status: never a password."""
        from remote.dsn import mask_dsn

        if self.url:
            return f"sync server {self.url}"
        return mask_dsn(self.dsn) if self.dsn else "embedded"


class SyncConfig(_Section):
    batch_size: int = Field(1000, ge=1, le=100_000)
    interval_seconds: float = Field(300, gt=0)
    debounce_ms: int = Field(300, ge=0)
    max_wait_ms: int = Field(5000, ge=0)
    # cap of the exponential back-off after failed syncs
    retry_max_seconds: float = Field(300, gt=0)


class DaemonConfig(_Section):
    # "" means chatsync.sock in the user runtime dir
    socket: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def resolved_socket(self) -> Path:
        if self.socket:
            return Path(self.socket).expanduser()
        with warnings.catch_warnings():
            # Without $XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-UID,
            # which is what we want; the path is shown in `chatsync status`.
            warnings.simplefilter("ignore")
            runtime = platformdirs.user_runtime_dir(APP, ensure_exists=True)
        return Path(runtime) / "chatsync.sock"


class ServerConfig(_Section):
    """`chatsync serve`: the HTTP sync server devices talk to instead of the database."""

    # host:port, or [v6-address]:port
    listen: str = "127.0.0.1:8787"
    # "" means the embedded PostgreSQL, as for remote.dsn
    dsn: str = ""
    # The project's …/auth/v1/.well-known/jwks.json (ES256/RS256/EdDSA keys)
    jwks_url: str = ""
    # The legacy shared HS256 secret; set CHATSYNC_SERVER_JWT_SECRET rather than the file.
    # SecretStr: never shown in a repr, a log line or an error.
    jwt_secret: SecretStr = SecretStr("")
    audience: str = "authenticated"
    # "" = not checked; else tokens must carry exactly this iss
    issuer: str = ""
    pool_size: int = Field(10, ge=1, le=1000)
    # request bodies, compressed and decompressed alike
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # how long a request waits for a database connection before 503
    pool_timeout_seconds: float = Field(5, gt=0)
    # an unknown kid refetches the JWKS at most this often (a flood of made-up kids must
    # not turn into a flood of fetches)
    jwks_refetch_seconds: float = Field(30, ge=0)
    # The one LISTEN connection per server process (live pulls). Must be a direct session
    # connection: a transaction-mode pooler cannot carry LISTEN. "" = dsn.
    listen_dsn: str = ""
    # The longest a pull with wait_seconds is held open when nothing is new.
    live_wait_max_seconds: float = Field(30, ge=0, le=3600)
    # Change-feed entries older than this are pruned; a device whose cursor is older
    # re-syncs in full.
    feed_retention_seconds: float = Field(30 * 24 * 3600, gt=0)
    # How often each server process tries to prune (one instance at a time does it).
    feed_prune_interval_seconds: float = Field(3600, gt=0)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8787")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr) -> SecretStr:
        # RFC 7518 §3.2: an HS256 key of fewer than 256 bits is guessable; Supabase's are longer.
        if 0 < len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (the project's JWT secret)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Config(_Section):
    local: LocalConfig = LocalConfig()
    remote: RemoteConfig = RemoteConfig()
    sync: SyncConfig = SyncConfig()
    daemon: DaemonConfig = DaemonConfig()
    server: ServerConfig = ServerConfig()
    source: str = Field("defaults", exclude=True)


def find_config(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("CHATSYNC_CONFIG"):
        return Path(os.environ["CHATSYNC_CONFIG"])
    default = Path(platformdirs.user_config_dir(APP)) / "config.toml"
    return default if default.exists() else None


def load_config(explicit: str | Path | None = None) -> Config:
    path = find_config(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    source = str(path) if path else "defaults"
    try:
        config = Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    return _apply_env(config)


def _apply_env(config: Config) -> Config:
    """`CHATSYNC_REMOTE_DSN` and friends override the file (secrets belong in the env)."""
    updates: dict[str, dict[str, Any]] = {}
    for section in ("local", "remote", "sync", "daemon", "server"):
        model = getattr(config, section)
        for key in type(model).model_fields:
            value = os.environ.get(f"CHATSYNC_{section.upper()}_{key.upper()}")
            if value is not None:
                updates.setdefault(section, model.model_dump())[key] = value
    if not updates:
        return config
    merged = config.model_dump()
    for section, values in updates.items():
        merged[section] = values
    try:
        # Environment values are strings; let them convert ("500" -> 500).
        return Config.model_validate({**merged, "source": config.source}, strict=False)
    except ValidationError as exc:
        raise ConfigError(f"environment: {_describe(exc, env=True)}") from None


def _describe(exc: ValidationError, *, env: bool = False) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        if env and len(error["loc"]) == 2:
            key = f"CHATSYNC_{str(error['loc'][0]).upper()}_{str(error['loc'][1]).upper()}"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{key}: {message}")
    return "; ".join(problems)
