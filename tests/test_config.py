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
    assert shipped == Config()  # `source` (where the values came from) is not compared


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
