"""The device's HTTP transport: `chatsync serve` runs the push and pull as its user.

The device holds no database credential, only its user's session (daemon/tokens.py): every
request carries the access token; a 401 refreshes it once and retries. The JSON shapes are
`remote/server/wire.py`'s. A full pull is paged by message id across requests (the direct
mode's resumable first pull), so a first sync never holds a whole account in memory.

A push is sent whole and committed by the server, so the device cannot record the remote
transaction before its COMMIT as direct mode does: it records the batch in flight with an
unknown transaction before sending, and the server's answer settles it. After a crash in
between, the batch's rows stay dirty with the pushed version as their merge base (see
localstore/inflight.py), so another device's later edit is a recorded conflict, never a
silent overwrite.
"""

from __future__ import annotations

import functools
import gzip
import json
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from localstore.outbox import CONVERSATION_COLUMNS, MESSAGE_COLUMNS, Kind, Refusal
from remote.pull import Changes
from remote.push import BatchResult, BeforeCommit, unstorable
from remote.transport import TransportError

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
GZIP_OVER_BYTES = 1024
# Level 1: a push batch is mostly prose and markdown, which level 1 already shrinks about
# 3x; level 5 took about as long as the server's whole handling of the batch on loopback.
GZIP_LEVEL = 1
# Status codes a retry later may fix: the server or its database is away or overloaded.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# What the server pushes in flight under, as far as the device can know before its answer.
UNKNOWN_XID = ""


class AccessTokens(Protocol):
    """Where the access token comes from (daemon.tokens.TokenKeeper)."""

    def access_token(self, *, rejected: str | None = None) -> str: ...


class HttpTransport:
    def __init__(self, url: str, tokens: AccessTokens, origin: str) -> None:
        self.url = url.rstrip("/")
        self.tokens = tokens
        self.origin = origin
        self._http: httpx.Client | None = None

    def as_user(self, user_id: str, email: str) -> HttpUser:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=TIMEOUT,
                                      verify=tls_context(self.url))
        return HttpUser(self, user_id)

    def disconnect(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def call(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST *body* as the signed-in user; the answer's JSON, or TransportError."""
        assert self._http is not None
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
        if len(data) > GZIP_OVER_BYTES:
            data, headers["Content-Encoding"] = gzip.compress(data, GZIP_LEVEL), "gzip"
        token = self.tokens.access_token()
        for attempt in (1, 2):
            try:
                r = self._http.post(route, content=data,
                                    headers={**headers, "Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                raise TransportError(f"cannot reach the sync server at {self.url}: "
                                     f"{type(exc).__name__}", transient=True) from None
            if r.status_code == 401 and attempt == 1:
                token = self.tokens.access_token(rejected=token)  # refresh once, then retry
                continue
            break
        if r.status_code == 200:
            answer: dict[str, Any] = r.json()
            return answer
        raise _refusal(r)


def tls_context(url: str) -> ssl.SSLContext:
    """What the client checks the server's certificate with.

    httpx builds a context per client, loading the whole CA bundle (about 0.1 s, paid again
    after every failed sync, which drops the client). An https:// server gets httpx's own
    default context, built once per process; a plain http:// server needs none, so it gets
    one that trusts no certificate at all (were TLS ever attempted, it would fail closed).
    """
    if url.lower().startswith("https://"):
        return _default_tls()
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, against no CA: trusts nothing


@functools.cache
def _default_tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _refusal(r: httpx.Response) -> TransportError:
    try:
        body = r.json()
        detail = str(body.get("detail") or body.get("error") or "")
        if body.get("field"):
            detail += f" (field {body['field']})"
    except ValueError:
        detail = ""
    detail = detail[:300] or "no reason given"
    if r.status_code == 401:
        return TransportError(f"the sync server refused this device's session: {detail}",
                              transient=False)
    if r.status_code == 413:
        return TransportError("a batch is larger than the sync server accepts "
                              "(server.max_body_bytes): lower sync.batch_size", transient=False)
    if r.status_code in TRANSIENT_STATUS:
        retry = r.headers.get("Retry-After")
        return TransportError(f"the sync server is unavailable ({r.status_code}: {detail})"
                              + (f"; it asks to retry in {retry}s" if retry else ""),
                              transient=True)
    return TransportError(f"the sync server refused the request ({r.status_code}: {detail})",
                          transient=False)


class HttpUser:
    def __init__(self, transport: HttpTransport, user_id: str) -> None:
        self.transport = transport
        self.user_id = user_id

    def ensure_profile(self) -> None:
        """The server makes sure of the profile with every push."""

    def push(
        self, kind: Kind, rows: Sequence[dict[str, Any]], *,
        before_commit: BeforeCommit | None = None,
    ) -> BatchResult:
        result = BatchResult()
        columns = CONVERSATION_COLUMNS if kind == "conversation" else MESSAGE_COLUMNS
        sendable = []
        for row in rows:
            # Refused here what JSON or the server could not take (the server checks again):
            # such a row must not turn the whole request into a 422.
            problem = unstorable(row, columns)
            if problem:
                result.refused.append(Refusal(kind, row["id"], row["rev"], problem))
            else:
                sendable.append(row)
        if not sendable:
            return result
        if before_commit is not None:
            before_commit(BatchResult(acked=[(r["id"], r["rev"]) for r in sendable],
                                      xid=UNKNOWN_XID))
        answer = self.transport.call("/v1/push", {
            kind + "s": [{k: r[k] for k in (*columns, "was_synced", "rev")} for r in sendable],
            "origin": self.transport.origin,
        })[kind + "s"]
        result.acked = [(a["id"], a["rev"]) for a in answer["acked"]]
        result.written = int(answer["written"])
        result.refused += [Refusal(kind, x["id"], x["rev"], x["reason"])
                           for x in answer["refused"]]
        result.gone = list(answer["gone"])
        result.xid = UNKNOWN_XID  # as recorded before sending: settled under the same key
        return result

    def push_deletions(self, rows: Sequence[dict[str, Any]]) -> None:
        self.transport.call("/v1/push", {
            "deletions": [{"kind": r["kind"], "id": r["id"], "rev": r["rev"]} for r in rows],
            "origin": self.transport.origin,
        })

    @contextmanager
    def read_changes(
        self, since: str | None, *, page_size: int, after_message_id: str | None = None,
    ) -> Iterator[Changes | None]:
        first = self._pull(since, page_size, after_message_id, messages_only=False)
        if not first["changed"]:
            yield None
            return
        yield Changes(horizon=first["cursor"], full=first["full"],
                      conversations=first["conversations"],
                      message_count=int(first["message_count"]),
                      messages=self._pages(first, page_size))

    def _pages(self, page: dict[str, Any], page_size: int) -> Iterator[list[dict[str, Any]]]:
        while True:
            if page["messages"]:
                yield page["messages"]
            if not page["more"]:
                return
            page = self._pull(None, page_size, page["messages"][-1]["id"], messages_only=True)

    def _pull(self, since: str | None, page_size: int, after: str | None, *,
              messages_only: bool) -> dict[str, Any]:
        return self.transport.call("/v1/pull", {
            "cursor": since, "page_size": page_size, "after_message_id": after,
            "messages_only": messages_only, "origin": self.transport.origin,
        })

    def xact_status(self, xid: str) -> str | None:
        # The server's transaction ids are not the device's to ask about (see the module's
        # docstring); a batch whose answer never came is settled as unknown.
        return None
