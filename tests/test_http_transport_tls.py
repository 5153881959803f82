"""The HTTP transport's TLS context: the CA bundle is loaded once per process for https://
servers (httpx loads it for every client, about 0.1 s, again after each failed sync), and
never for plain http://, where a context that trusts nothing keeps any TLS failing closed."""

from __future__ import annotations

import ssl

from remote.http_transport import HttpTransport, tls_context


class _Tokens:
    def access_token(self, *, rejected: str | None = None) -> str:
        return "unused"


def _client_context(url: str) -> ssl.SSLContext:
    transport = HttpTransport(url, _Tokens(), "origin")
    transport.as_user("u", "e")
    assert transport._http is not None
    context = transport._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    transport.disconnect()
    return context


def test_https_clients_share_one_verifying_context() -> None:
    first, second = _client_context("https://sync.example"), _client_context("HTTPS://x")
    assert first is second  # built once per process, not once per client
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    assert first.cert_store_stats()["x509_ca"] > 0  # the CA bundle is there


def test_plain_http_loads_no_ca_and_trusts_nothing() -> None:
    context = tls_context("http://127.0.0.1:8787")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    assert _client_context("http://127.0.0.1:8787").cert_store_stats()["x509_ca"] == 0
