"""Configuration: search order, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import Config, ConfigError, load_config
from remote.dsn import mask_dsn


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_documented_default_file_loads_and_matches_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("CHATSYNC_REMOTE_DSN", "CHATSYNC_LOCAL_PATH", "CHATSYNC_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    shipped = load_config(Path(__file__).parent.parent / "config.toml")
    assert shipped._replace(source="defaults") == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sync]\nbatch_size = 'lots'\n", "sync.batch_size"),
        ("[sync]\nbatchsize = 10\n", "sync.batchsize: unknown key"),
        ("[sync]\ninterval_seconds = -1\n", "sync.interval_seconds"),
        ("[remote]\ndsn = 5\n", "remote.dsn"),
        ("[colour]\nred = true\n", "colour: unknown key"),
        ("[sync\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert str(tmp_path) in str(info.value)


def test_search_order_and_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = write(tmp_path, "[sync]\nbatch_size = 7\n")
    other = tmp_path / "other.toml"
    other.write_text("[sync]\nbatch_size = 9\n")
    monkeypatch.setenv("CHATSYNC_CONFIG", str(other))
    assert load_config(explicit).sync.batch_size == 7
    assert load_config(None).sync.batch_size == 9

    monkeypatch.setenv("CHATSYNC_SYNC_BATCH_SIZE", "11")
    monkeypatch.setenv("CHATSYNC_REMOTE_DSN", "postgresql://u:hunter2@db/app")
    config = load_config(None)
    assert config.sync.batch_size == 11
    assert config.remote.dsn == "postgresql://u:hunter2@db/app"

    monkeypatch.setenv("CHATSYNC_SYNC_BATCH_SIZE", "many")
    with pytest.raises(ConfigError, match="CHATSYNC_SYNC_BATCH_SIZE"):
        load_config(None)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://u:hunter2@db.example.com:5432/app",
     "postgres://u:hunter2@db,db2:6543/app?sslmode=require",
     "postgresql://u@db/app?sslmode=require&password=hunter2",
     "host=db user=u password=hunter2 dbname=app",
     "host=db password = 'hunter2 \\'quoted' dbname=app",
     "host=db PASSWORD=hunter2"],
)
def test_dsn_passwords_are_masked(dsn: str) -> None:
    masked = mask_dsn(dsn)
    assert "hunter2" not in masked and "****" in masked and "db" in masked


# The keys, defaults and environment variables are contracts (README, config.toml,
# deployments' env files): pinned here one by one.
DEFAULTS = {
    "local": {"path": ""},
    "remote": {"dsn": "", "url": "", "auth_url": "", "anon_key": ""},
    "sync": {"batch_size": 1000, "interval_seconds": 300, "debounce_ms": 300,
             "max_wait_ms": 5000, "retry_max_seconds": 300},
    "daemon": {"socket": "", "log_level": "info"},
    "server": {"listen": "127.0.0.1:8787", "dsn": "", "jwks_url": "", "jwt_secret": "",
               "audience": "authenticated", "issuer": "", "pool_size": 10,
               "max_body_bytes": 16 * 1024 * 1024, "pool_timeout_seconds": 5,
               "jwks_refetch_seconds": 30, "listen_dsn": "", "live_wait_max_seconds": 30,
               "feed_retention_seconds": 30 * 24 * 3600,
               "feed_prune_interval_seconds": 3600},
}


def _plain(value: object) -> object:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for var in list(os.environ):
        if var.startswith("CHATSYNC_"):
            monkeypatch.delenv(var)
    return monkeypatch


def test_every_key_its_default_and_its_environment_variable(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    config = Config()
    actual = {section: {f: _plain(getattr(getattr(config, section), f))
                        for f in getattr(config, section)._fields}
              for section in DEFAULTS}
    assert actual == DEFAULTS
    assert load_config(write(tmp_path, ""))._replace(source="defaults") == config
    # every key is overridden by CHATSYNC_<SECTION>_<KEY>, converted from the string
    overrides = {"local": {"path": "/x/store.db"},
                 "remote": {"dsn": "host=db", "url": "https://s", "auth_url": "https://a",
                            "anon_key": "k"},
                 "sync": {"batch_size": 7, "interval_seconds": 1.5, "debounce_ms": 0,
                          "max_wait_ms": 9, "retry_max_seconds": 60},
                 "daemon": {"socket": "/x/s.sock", "log_level": "debug"},
                 "server": {"listen": "[::1]:9", "dsn": "host=s", "jwks_url": "https://j",
                            "jwt_secret": "s" * 40, "audience": "a", "issuer": "i",
                            "pool_size": 3, "max_body_bytes": 2048,
                            "pool_timeout_seconds": 0.5, "jwks_refetch_seconds": 0,
                            "listen_dsn": "host=l", "live_wait_max_seconds": 3600,
                            "feed_retention_seconds": 60,
                            "feed_prune_interval_seconds": 10}}
    assert overrides.keys() == DEFAULTS.keys()
    for section, values in overrides.items():
        assert values.keys() == DEFAULTS[section].keys()
        for key, value in values.items():
            clean_env.setenv(f"CHATSYNC_{section.upper()}_{key.upper()}", str(value))
    config, defaults = load_config(None), Config()
    for section, values in overrides.items():
        for key, value in values.items():
            got = _plain(getattr(getattr(config, section), key))
            default = _plain(getattr(getattr(defaults, section), key))
            assert got == value and type(got) is type(default), (section, key, got)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # strict types from the file: no bool for a number, no float for an int, no
        # number for a string, no string for a number
        ("[sync]\nbatch_size = true\n", "sync.batch_size: Input should be a valid integer"),
        ("[sync]\nbatch_size = 10.0\n", "sync.batch_size: Input should be a valid integer"),
        ("[sync]\ninterval_seconds = '5'\n",
         "sync.interval_seconds: Input should be a valid number"),
        ("[sync]\ninterval_seconds = false\n",
         "sync.interval_seconds: Input should be a valid number"),
        ("[local]\npath = ['a']\n", "local.path: Input should be a valid string"),
        ("[daemon]\nlog_level = 'loud'\n",
         "daemon.log_level: Input should be 'debug', 'info', 'warning' or 'error'"),
        # bounds
        ("[sync]\nbatch_size = 0\n", "sync.batch_size: Input should be greater than or equal to 1"),
        ("[sync]\nbatch_size = 100001\n",
         "sync.batch_size: Input should be less than or equal to 100000"),
        ("[sync]\nretry_max_seconds = 0\n",
         "sync.retry_max_seconds: Input should be greater than 0"),
        # names: nested keys, whole sections, sections that are not tables
        ("[server]\npool = 3\n", "server.pool: unknown key"),
        ("source = 'x'\n", "source: unknown key"),
        ("sync = 5\n", r"sync: Input should be a table \(\[sync\]\)"),
        ("[sync.extra]\nx = 1\n", "sync.extra: unknown key"),
    ],
)
def test_file_values_are_checked_strictly_and_named(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}/config.toml: {message}$"):
        load_config(write(tmp_path, text))


def test_an_int_is_a_fine_float_and_every_problem_is_named_at_once(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, "[sync]\ninterval_seconds = 5\n"))
    assert config.sync.interval_seconds == 5.0 and type(config.sync.interval_seconds) is float
    assert config.source == str(tmp_path / "config.toml")
    text = "[sync]\nbatch_size = 'x'\ndebounce_ms = -1\n[colour]\nred = 1\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value) == (
        f"{tmp_path}/config.toml: colour: unknown key; sync.batch_size: Input should be a "
        "valid integer; sync.debounce_ms: Input should be greater than or equal to 0")


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("CHATSYNC_SYNC_BATCH_SIZE", "1.5", "Input should be a valid integer"),
        ("CHATSYNC_SYNC_BATCH_SIZE", "0", "Input should be greater than or equal to 1"),
        ("CHATSYNC_SYNC_INTERVAL_SECONDS", "soon", "Input should be a valid number"),
        ("CHATSYNC_DAEMON_LOG_LEVEL", "DEBUG", "Input should be 'debug', 'info'"),
        ("CHATSYNC_SERVER_LISTEN", "8787", "Value error, must be host:port"),
    ],
)
def test_environment_values_convert_and_errors_name_the_variable(
    clean_env: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError, match=f"^environment: {var}: {message}"):
        load_config(None)


def test_environment_overrides_only_its_key_and_wins_over_the_file(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[sync]\nbatch_size = 7\ndebounce_ms = 50\n")
    clean_env.setenv("CHATSYNC_SYNC_DEBOUNCE_MS", " 120 ")
    clean_env.setenv("CHATSYNC_SYNC_BATCHSIZE", "3")  # not a key: not read
    config = load_config(path)
    assert (config.sync.batch_size, config.sync.debounce_ms) == (7, 120)
    assert config.source == str(path)


def test_secrets_never_appear_in_errors_or_reprs(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[server]\njwt_secret = 'hunter2'\n"))
    assert "hunter2" not in str(info.value) and "server.jwt_secret" in str(info.value)
    clean_env.setenv("CHATSYNC_SERVER_JWT_SECRET", "hunter2")
    with pytest.raises(ConfigError) as info:
        load_config(None)
    assert "hunter2" not in str(info.value)
    assert "CHATSYNC_SERVER_JWT_SECRET" in str(info.value)
    clean_env.setenv("CHATSYNC_SERVER_JWT_SECRET", "hunter2" * 6)
    config = load_config(None)
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.server.jwt_secret)


def test_the_configuration_is_immutable(clean_env: pytest.MonkeyPatch) -> None:
    config = load_config(None)
    with pytest.raises(AttributeError):
        config.sync.batch_size = 5  # type: ignore[misc]
