"""`[server]`: defaults, strict validation, the secret from the environment, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, ServerConfig, load_config
from remote.server.settings import NO_KEY, ServerSettings, require_key


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CHATSYNC_CONFIG", "CHATSYNC_SERVER_JWT_SECRET", "CHATSYNC_SERVER_DSN"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_and_the_shipped_file() -> None:
    shipped = load_config(Path(__file__).parent.parent / "config.toml").server
    assert shipped == ServerConfig()
    assert (shipped.listen, shipped.host, shipped.port) == ("127.0.0.1:8787", "127.0.0.1", 8787)
    assert shipped.audience == "authenticated" and shipped.dsn == "" and shipped.issuer == ""


@pytest.mark.parametrize(("text", "message"), [
    ("[server]\nlisten = 'localhost'\n", "server.listen: Value error, must be host:port"),
    ("[server]\nlisten = '127.0.0.1:99999'\n", "server.listen"),
    ("[server]\npool_size = 0\n", "server.pool_size"),
    ("[server]\npool_size = '10'\n", "server.pool_size"),
    ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes"),
    ("[server]\njwks_url = 'file:///etc/passwd'\n", "server.jwks_url: Value error"),
    ("[server]\njwks = 'x'\n", "server.jwks: unknown key"),
    ("[server]\njwt_secret = 'short'\n", "server.jwt_secret: Value error, must be at least 32"),
])
def test_bad_server_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_secret_comes_from_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATSYNC_SERVER_JWT_SECRET", "s3cret-value-s3cret-value-s3cret-value")
    monkeypatch.setenv("CHATSYNC_SERVER_LISTEN", "[::1]:9000")
    config = load_config(None)
    assert config.server.jwt_secret.get_secret_value() == "s3cret-value-s3cret-value-s3cret-value"
    assert (config.server.host, config.server.port) == ("::1", 9000)
    settings = ServerSettings.from_config(config.server, "postgresql://u:pw@h/db")
    for text in (repr(config), str(config.server), repr(settings)):
        assert "s3cret-value-s3cret-value-s3cret-value" not in text and "pw@" not in text


def test_no_key_is_a_sentence_saying_what_to_set() -> None:
    with pytest.raises(ConfigError) as info:
        require_key(ServerConfig())
    assert str(info.value) == NO_KEY
    require_key(ServerConfig(jwks_url="https://x.supabase.co/auth/v1/.well-known/jwks.json"))
