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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from localstore.outbox import CONVERSATION_COLUMNS, MESSAGE_COLUMNS, Kind, Refusal
from remote.pull import Changes, ResyncRequired
from remote.push import BatchResult, BeforeCommit, BeforeUpsert, unstorable
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
# A waiting pull's HTTP read timeout is its wait plus this: the server answers at the end of
# the wait (capped by server.live_wait_max_seconds), never later than the wait asked for.
WAIT_MARGIN_S = 30.0
# How long a live pull's answer may stand in for the normal pull that follows it.
LIVE_ANSWER_FRESH_S = 10.0


class AccessTokens(Protocol):
    """Where the access token comes from (daemon.tokens.TokenKeeper)."""

    def access_token(self, *, rejected: str | None = None) -> str: ...


class HttpTransport:
    def __init__(self, url: str, tokens: AccessTokens, origin: str) -> None:
        self.url = url.rstrip("/")
        self.tokens = tokens
        self.origin = origin
        self._http: httpx.Client | None = None
        # The last live pull's answer, (user, cursor, answer, when): the engine's pull that
        # follows it from the same cursor uses it instead of asking again.
        self.live_answer: tuple[str, str, dict[str, Any], float] | None = None

    def as_user(self, user_id: str, email: str) -> HttpUser:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=TIMEOUT,
                                      verify=tls_context(self.url))
        return HttpUser(self, user_id)

    def disconnect(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def call(self, route: str, body: dict[str, Any], *,
             read_timeout: float | None = None) -> dict[str, Any]:
        """POST *body* as the signed-in user; the answer's JSON, or TransportError."""
        assert self._http is not None
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
        if len(data) > GZIP_OVER_BYTES:
            data, headers["Content-Encoding"] = gzip.compress(data, GZIP_LEVEL), "gzip"
        token = self.tokens.access_token()
        for attempt in (1, 2):
            try:
                r = self._http.post(
                    route, content=data,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                    timeout=TIMEOUT if read_timeout is None
                    else httpx.Timeout(TIMEOUT.connect, read=read_timeout,
                                       write=TIMEOUT.write, pool=TIMEOUT.pool))
            except httpx.HTTPError as exc:
                raise TransportError(f"cannot reach the sync server at {self.url}: "
                                     f"{type(exc).__name__}", transient=True,
                                     unreachable=True) from None
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

    def wait_for_changes(self, cursor: str, wait_seconds: float) -> bool:
        """One live pull: True as soon as another device or the web app changed something
        for this user after *cursor* (or a re-sync is due), False when *wait_seconds*
        passed with nothing new. Applies nothing: run the normal pull next (it reuses this
        answer). The device's own pushes never end the wait. The server caps the wait at
        server.live_wait_max_seconds; TransportError as for any request.

        Pass the cursor of the store's last pull (Inbox.cursor): entries of this device's
        own origin after it are not news, so a conversation another device changed and
        this device's push then touched again waits for the next change or sync."""
        answer = self.transport.call("/v1/pull", {
            "cursor": cursor, "origin": self.transport.origin, "wait_seconds": wait_seconds,
        }, read_timeout=wait_seconds + WAIT_MARGIN_S)
        if answer["changed"]:
            self.transport.live_answer = (self.user_id, cursor, answer, time.monotonic())
            return True
        return False

    def ensure_profile(self) -> None:
        """The server makes sure of the profile with every push."""

    def push(
        self, kind: Kind, rows: Sequence[dict[str, Any]], *,
        before_commit: BeforeCommit | None = None, before_upsert: BeforeUpsert | None = None,
    ) -> BatchResult:
        # (before_upsert is not called: the whole page is recorded in before_commit, before
        # the request, since the server's transaction id is not known here.)
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
        byte_order: bool = False,
    ) -> Iterator[Changes | None]:
        first = self._live_answer(since, after_message_id)
        if first is None:
            first = self._pull(since, page_size, after_message_id, messages_only=False,
                               byte_order=byte_order)
        if first.get("resync"):
            raise ResyncRequired
        if not first["changed"]:
            yield None
            return
        yield Changes(horizon=first["cursor"], full=first["full"],
                      conversations=first["conversations"],
                      message_count=int(first["message_count"]),
                      messages=self._pages(first, page_size, byte_order))

    def _live_answer(self, since: str | None, after: str | None) -> dict[str, Any] | None:
        live, self.transport.live_answer = self.transport.live_answer, None
        if live is None or since is None or after is not None:
            return None
        user_id, cursor, answer, at = live
        if (user_id, cursor) != (self.user_id, since) \
                or time.monotonic() - at > LIVE_ANSWER_FRESH_S:
            return None
        return answer  # an incremental window, answered whole: a valid pull from *since*

    def _pages(self, page: dict[str, Any], page_size: int,
               byte_order: bool) -> Iterator[list[dict[str, Any]]]:
        while True:
            if page["messages"]:
                yield page["messages"]
            if not page["more"]:
                return
            page = self._pull(None, page_size, page["messages"][-1]["id"], messages_only=True,
                              byte_order=byte_order)

    def _pull(self, since: str | None, page_size: int, after: str | None, *,
              messages_only: bool, byte_order: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "cursor": since, "page_size": page_size, "after_message_id": after,
            "messages_only": messages_only, "origin": self.transport.origin,
        }
        if byte_order:  # only then: a server of before re-syncs does not know the field
            body["resync"] = True
        return self.transport.call("/v1/pull", body)

    def xact_status(self, xid: str) -> str | None:
        # The server's transaction ids are not the device's to ask about (see the module's
        # docstring); a batch whose answer never came is settled as unknown.
        return None
