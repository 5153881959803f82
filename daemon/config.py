"""Configuration: `config.toml`, then `CHATSYNC_<SECTION>_<KEY>` environment overrides.

The file is found by `--config PATH`, else `$CHATSYNC_CONFIG`, else `config.toml` in the
user config dir; with none of these, the documented defaults apply. Unknown keys and wrong
types are errors that name the key.

Every `chatsync` command loads this first, so it is kept light to import: each section is
an immutable `NamedTuple` (creating six frozen dataclasses cost more than the rest of this
module), checked by `_values` below — strict types from the file, strings converted from
the environment, bounds and value checks declared beside each field as `Annotated[...,
Rule(...)]` — rather than by a validation library whose import alone would cost a
noticeable part of the command (pydantic took ~100 ms of `chatsync status`). The messages
keep pydantic's wording, which the README quotes.
"""

# No `from __future__ import annotations`: `_values` reads the fields' types at run time.

import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

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


class Rule:
    """Numeric bounds and a value check (returning an error or None) for one field."""

    __slots__ = ("check", "ge", "gt", "le")

    def __init__(self, *, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, check: Check | None = None) -> None:
        self.ge, self.gt, self.le, self.check = ge, gt, le, check

    def problem(self, value: Any) -> str | None:
        if self.ge is not None and not value >= self.ge:
            return f"Input should be greater than or equal to {self.ge}"
        if self.gt is not None and not value > self.gt:
            return f"Input should be greater than {self.gt}"
        if self.le is not None and not value <= self.le:
            return f"Input should be less than or equal to {self.le}"
        error = self.check(value) if self.check is not None else None
        return None if error is None else f"Value error, {error}"


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


class LocalConfig(NamedTuple):
    # "" means the default: chatsync.db in the user data dir
    path: str = ""

    @property
    def resolved_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        import platformdirs

        return Path(platformdirs.user_data_dir(APP)) / "chatsync.db"


class RemoteConfig(NamedTuple):
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


class SyncConfig(NamedTuple):
    batch_size: Annotated[int, Rule(ge=1, le=100_000)] = 1000
    interval_seconds: Annotated[float, Rule(gt=0)] = 300.0
    debounce_ms: Annotated[int, Rule(ge=0)] = 300
    max_wait_ms: Annotated[int, Rule(ge=0)] = 5000
    # cap of the exponential back-off after failed syncs
    retry_max_seconds: Annotated[float, Rule(gt=0)] = 300.0


class DaemonConfig(NamedTuple):
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


class ServerConfig(NamedTuple):
    """`chatsync serve`: the HTTP sync server devices talk to instead of the database."""

    # host:port, or [v6-address]:port
    listen: Annotated[str, Rule(check=_host_port)] = "127.0.0.1:8787"
    # "" means the embedded PostgreSQL, as for remote.dsn
    dsn: str = ""
    # The project's …/auth/v1/.well-known/jwks.json (ES256/RS256/EdDSA keys)
    jwks_url: Annotated[str, Rule(check=_http_url)] = ""
    # The legacy shared HS256 secret; set CHATSYNC_SERVER_JWT_SECRET rather than the file.
    # SecretStr: never shown in a repr, a log line or an error (immutable, so one shared
    # default is safe).
    jwt_secret: Annotated[SecretStr, Rule(check=_long_secret)] = NO_SECRET
    audience: str = "authenticated"
    # "" = not checked; else tokens must carry exactly this iss
    issuer: str = ""
    pool_size: Annotated[int, Rule(ge=1, le=1000)] = 10
    # request bodies, compressed and decompressed alike
    max_body_bytes: Annotated[int, Rule(ge=1024)] = 16 * 1024 * 1024
    # how long a request waits for a database connection before 503
    pool_timeout_seconds: Annotated[float, Rule(gt=0)] = 5.0
    # an unknown kid refetches the JWKS at most this often (a flood of made-up kids must
    # not turn into a flood of fetches)
    jwks_refetch_seconds: Annotated[float, Rule(ge=0)] = 30.0
    # The one LISTEN connection per server process (live pulls). Must be a direct session
    # connection: a transaction-mode pooler cannot carry LISTEN. "" = dsn.
    listen_dsn: str = ""
    # The longest a pull with wait_seconds is held open when nothing is new.
    live_wait_max_seconds: Annotated[float, Rule(ge=0, le=3600)] = 30.0
    # Change-feed entries older than this are pruned; a device whose cursor is older
    # re-syncs in full.
    feed_retention_seconds: Annotated[float, Rule(gt=0)] = 30.0 * 24 * 3600
    # How often each server process tries to prune (one instance at a time does it).
    feed_prune_interval_seconds: Annotated[float, Rule(gt=0)] = 3600.0

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Config(NamedTuple):
    local: LocalConfig = LocalConfig()
    remote: RemoteConfig = RemoteConfig()
    sync: SyncConfig = SyncConfig()
    daemon: DaemonConfig = DaemonConfig()
    server: ServerConfig = ServerConfig()
    # where the values came from: a path, or "defaults"
    source: str = "defaults"


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
    problems = [f"{key}: unknown key" for key in data if key not in SECTIONS]
    sections: dict[str, Any] = {}
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
        found = {key: os.environ[prefix + key.upper()] for key in cls._fields
                 if prefix + key.upper() in os.environ}
        if found:
            # Environment values are strings; let them convert ("500" -> 500).
            updates = _values(cls, found, name, problems, env=True)
            sections[name] = getattr(config, name)._replace(**updates)
    if problems:
        raise ConfigError(f"environment: {'; '.join(problems)}")
    return config._replace(**sections) if sections else config


def _values(cls: type[Any], data: Mapping[str, Any], name: str, problems: list[str],
            *, env: bool = False) -> dict[str, Any]:
    """The values of *data* that are right for section *cls*, converted to its types.

    From the file types are strict (`batch_size = "10"` is an error; an int is a fine
    float); from the environment strings convert. Problems are appended, each naming its
    key (`sync.batch_size`, or `CHATSYNC_SYNC_BATCH_SIZE` for the environment).
    """
    annotations: dict[str, Any] = cls.__annotations__
    values: dict[str, Any] = {}
    for key, raw in data.items():
        where = f"CHATSYNC_{name.upper()}_{key.upper()}" if env else f"{name}.{key}"
        if key not in cls._fields:
            problems.append(f"{where}: unknown key")
            continue
        kind = annotations[key]
        rules: tuple[Rule, ...] = ()
        if typing.get_origin(kind) is Annotated:
            kind, rules = kind.__origin__, kind.__metadata__
        value, problem = _convert(kind, raw, lax=env)
        for rule in rules if problem is None else ():
            problem = problem or rule.problem(value)
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
