"""Configuration: `config.toml`, then `CHATSYNC_<SECTION>_<KEY>` environment overrides.

The file is found by `--config PATH`, else `$CHATSYNC_CONFIG`, else `config.toml` in the
user config dir; with none of these, the documented defaults apply. Unknown keys and wrong
types are errors that name the key.

Every `chatsync` command loads this first, so it is kept light to import: frozen standard
dataclasses checked by `_values` below (strict types from the file, strings converted
from the environment, bounds and a few value checks declared beside each field), rather
than a validation library whose import alone would cost a person-noticeable fraction of
the command (pydantic took ~100 ms of `chatsync status`). The messages keep pydantic's
wording, which the README quotes.
"""

# No `from __future__ import annotations`: `_values` reads the fields' types at run time.

import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

APP = "chatsync"

LogLevel = Literal["debug", "info", "warning", "error"]


class ConfigError(Exception):
    """The configuration is unusable; the message names the file and the key."""


class SecretStr:
    """A string never shown in a repr, a log line or an error (as pydantic's SecretStr)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretStr('{self}')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)


NO_SECRET = SecretStr("")

Check = Callable[[Any], str | None]


def _setting(default: Any, *, ge: float | None = None, gt: float | None = None,
             le: float | None = None, check: Check | None = None) -> Any:
    """A field with its default, numeric bounds and a value check (an error or None)."""
    limits = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    return field(default=default, metadata={**limits, "check": check})


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be host:port, e.g. 127.0.0.1:8787"
    return None


def _http_url(value: str) -> str | None:
    if value and not value.lower().startswith(("https://", "http://")):
        return "must be an http(s) URL"
    return None


def _long_secret(value: SecretStr) -> str | None:
    # RFC 7518 §3.2: an HS256 key of fewer than 256 bits is guessable; Supabase's are longer.
    if 0 < len(value) < 32:
        return "must be at least 32 characters (the project's JWT secret)"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalConfig:
    # "" means the default: chatsync.db in the user data dir
    path: str = ""

    @property
    def resolved_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        import platformdirs

        return Path(platformdirs.user_data_dir(APP)) / "chatsync.db"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteConfig:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    batch_size: int = _setting(1000, ge=1, le=100_000)
    interval_seconds: float = _setting(300.0, gt=0)
    debounce_ms: int = _setting(300, ge=0)
    max_wait_ms: int = _setting(5000, ge=0)
    # cap of the exponential back-off after failed syncs
    retry_max_seconds: float = _setting(300.0, gt=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    # "" means chatsync.sock in the user runtime dir
    socket: str = ""
    log_level: LogLevel = "info"

    @property
    def resolved_socket(self) -> Path:
        if self.socket:
            return Path(self.socket).expanduser()
        import warnings

        import platformdirs

        with warnings.catch_warnings():
            # Without $XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-UID,
            # which is what we want; the path is shown in `chatsync status`.
            warnings.simplefilter("ignore")
            runtime = platformdirs.user_runtime_dir(APP, ensure_exists=True)
        return Path(runtime) / "chatsync.sock"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """`chatsync serve`: the HTTP sync server devices talk to instead of the database."""

    # host:port, or [v6-address]:port
    listen: str = _setting("127.0.0.1:8787", check=_host_port)
    # "" means the embedded PostgreSQL, as for remote.dsn
    dsn: str = ""
    # The project's …/auth/v1/.well-known/jwks.json (ES256/RS256/EdDSA keys)
    jwks_url: str = _setting("", check=_http_url)
    # The legacy shared HS256 secret; set CHATSYNC_SERVER_JWT_SECRET rather than the file.
    # SecretStr: never shown in a repr, a log line or an error (immutable, so one shared
    # default is safe).
    jwt_secret: SecretStr = _setting(NO_SECRET, check=_long_secret)  # noqa: RUF009
    audience: str = "authenticated"
    # "" = not checked; else tokens must carry exactly this iss
    issuer: str = ""
    pool_size: int = _setting(10, ge=1, le=1000)
    # request bodies, compressed and decompressed alike
    max_body_bytes: int = _setting(16 * 1024 * 1024, ge=1024)
    # how long a request waits for a database connection before 503
    pool_timeout_seconds: float = _setting(5.0, gt=0)
    # an unknown kid refetches the JWKS at most this often (a flood of made-up kids must
    # not turn into a flood of fetches)
    jwks_refetch_seconds: float = _setting(30.0, ge=0)
    # The one LISTEN connection per server process (live pulls). Must be a direct session
    # connection: a transaction-mode pooler cannot carry LISTEN. "" = dsn.
    listen_dsn: str = ""
    # The longest a pull with wait_seconds is held open when nothing is new.
    live_wait_max_seconds: float = _setting(30.0, ge=0, le=3600)
    # Change-feed entries older than this are pruned; a device whose cursor is older
    # re-syncs in full.
    feed_retention_seconds: float = _setting(30.0 * 24 * 3600, gt=0)
    # How often each server process tries to prune (one instance at a time does it).
    feed_prune_interval_seconds: float = _setting(3600.0, gt=0)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    local: LocalConfig = field(default_factory=LocalConfig)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    # where the values came from (a path, or "defaults"); not a setting, not compared
    source: str = field(default="defaults", compare=False)


SECTIONS: dict[str, type[Any]] = {
    "local": LocalConfig, "remote": RemoteConfig, "sync": SyncConfig,
    "daemon": DaemonConfig, "server": ServerConfig,
}


def find_config(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("CHATSYNC_CONFIG"):
        return Path(os.environ["CHATSYNC_CONFIG"])
    import platformdirs

    default = Path(platformdirs.user_config_dir(APP)) / "config.toml"
    return default if default.exists() else None


def load_config(explicit: str | Path | None = None) -> Config:
    path = find_config(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        import tomllib

        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    source = str(path) if path else "defaults"
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for key in data:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown key")
    for name, cls in SECTIONS.items():
        if name not in data:
            continue
        if isinstance(data[name], dict):
            sections[name] = cls(**_values(cls, data[name], name, problems))
        else:
            problems.append(f"{name}: Input should be a table ([{name}])")
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)}")
    return _apply_env(Config(**sections, source=source))


def _apply_env(config: Config) -> Config:
    """`CHATSYNC_REMOTE_DSN` and friends override the file (secrets belong in the env)."""
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        prefix = f"CHATSYNC_{name.upper()}_"
        found = {f.name: os.environ[prefix + f.name.upper()] for f in fields(cls)
                 if prefix + f.name.upper() in os.environ}
        if found:
            # Environment values are strings; let them convert ("500" -> 500).
            updates = _values(cls, found, name, problems, env=True)
            sections[name] = replace(getattr(config, name), **updates)
    if problems:
        raise ConfigError(f"environment: {'; '.join(problems)}")
    return replace(config, **sections) if sections else config


def _values(cls: type[Any], data: Mapping[str, Any], name: str, problems: list[str],
            *, env: bool = False) -> dict[str, Any]:
    """The values of *data* that are right for section *cls*, converted to its types.

    From the file types are strict (`batch_size = "10"` is an error; an int is a fine
    float); from the environment strings convert. Problems are appended, each naming its
    key (`sync.batch_size`, or `CHATSYNC_SYNC_BATCH_SIZE` for the environment).
    """
    known: dict[str, Field[Any]] = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        where = f"CHATSYNC_{name.upper()}_{key.upper()}" if env else f"{name}.{key}"
        spec = known.get(key)
        if spec is None:
            problems.append(f"{where}: unknown key")
            continue
        value, problem = _convert(spec.type, raw, lax=env)
        if problem is None:
            problem = _bounds(spec, value)
        if problem is None and spec.metadata.get("check") is not None:
            error = spec.metadata["check"](value)
            problem = None if error is None else f"Value error, {error}"
        if problem is None:
            values[key] = value
        else:
            problems.append(f"{where}: {problem}")
    return values


def _convert(kind: Any, raw: Any, *, lax: bool) -> tuple[Any, str | None]:
    """(the value as *kind*, None), or (None, what is wrong) in pydantic's words."""
    if kind is str or kind is SecretStr:
        if not isinstance(raw, str):
            return None, "Input should be a valid string"
        return (SecretStr(raw) if kind is SecretStr else raw), None
    if kind is int:
        if lax and isinstance(raw, str):
            try:
                return int(raw.strip()), None
            except ValueError:
                return None, "Input should be a valid integer, unable to parse string as an integer"
        if isinstance(raw, bool) or not isinstance(raw, int):
            return None, "Input should be a valid integer"
        return raw, None
    if kind is float:
        if lax and isinstance(raw, str):
            try:
                return float(raw.strip()), None
            except ValueError:
                return None, "Input should be a valid number, unable to parse string as a number"
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None, "Input should be a valid number"
        return float(raw), None
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if raw not in choices or not isinstance(raw, str):
            quoted = [f"'{c}'" for c in choices]
            return None, f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"
        return raw, None
    raise TypeError(f"no conversion for {kind!r}")  # a field of a type added without one


def _bounds(spec: Field[Any], value: Any) -> str | None:
    limits = spec.metadata
    if "ge" in limits and not value >= limits["ge"]:
        return f"Input should be greater than or equal to {limits['ge']}"
    if "gt" in limits and not value > limits["gt"]:
        return f"Input should be greater than {limits['gt']}"
    if "le" in limits and not value <= limits["le"]:
        return f"Input should be less than or equal to {limits['le']}"
    return None
