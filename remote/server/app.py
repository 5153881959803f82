"""The ASGI application: routes, status codes, gzip, metrics.

Every request to /v1/* is authenticated first (401), then its body is read under the cap
(413), validated (422) and run against the database (503 when it is unreachable). Error
bodies are `{"error": code, "detail": sentence}`, never a traceback or database text.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remote.server import db, handlers, metrics
from remote.server.auth import AuthError, Identity, KeysUnavailable, Verifier
from remote.server.body import BadEncoding, TooLarge, declared_too_large, read_capped
from remote.server.live import Listener, Waiters, close_on_shutdown_signal
from remote.server.retention import start_pruning
from remote.server.settings import ServerSettings
from remote.server.wire import PullRequest, PushRequest

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
RETRY_AFTER_S = 5
ROUTES = ("/v1/push", "/v1/pull", "/health", "/metrics")
# Answers over this many bytes are gzipped, at level 1: Starlette's default, 9, took about
# 5x the CPU of level 1 for a push's acknowledgements (and about 2.3x for a page of pulled
# messages) to save some 10 %, in the event loop every request shares.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 1


class Problem(Exception):
    """An answer with a status a client can act on."""

    def __init__(self, status: int, error: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.field, self.headers = field, headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return JSONResponse(body, self.status, headers=self.headers)


UNAVAILABLE = Problem(503, "unavailable", "the database is unreachable or busy; retry later",
                      headers={"Retry-After": str(RETRY_AFTER_S)})


def create_app(settings: ServerSettings | None = None) -> Starlette:
    """The app; with no settings (a uvicorn worker), from the configuration `serve` set up."""
    if settings is None:
        from daemon.config import load_config

        config = load_config(os.environ.get("CHATSYNC_CONFIG") or None)
        settings = ServerSettings.from_config(config.server, config.server.dsn)
    verifier = Verifier(
        jwks_url=settings.jwks_url, secret=settings.jwt_secret, audience=settings.audience,
        issuer=settings.issuer, refetch_s=settings.jwks_refetch_s,
    )
    pool = db.make_pool(settings.dsn, settings.pool_size, settings.pool_timeout_s)
    waiters = Waiters()
    listener = Listener(settings.live_dsn, waiters)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool.open(wait=False)  # a database that is down now gives 503s, not a dead server
        listener.start()  # connects in the background, and keeps reconnecting
        close_on_shutdown_signal(waiters)
        pruning = start_pruning(pool, settings.feed_retention_s, settings.feed_prune_interval_s)
        problem = await run_in_threadpool(verifier.warm_up)
        if problem:  # the auth server may be back soon: say so, answer 503 meanwhile
            log.warning("%s; requests get 503 until it can", problem)
        try:
            yield
        finally:
            pruning.shutdown(wait=False)
            waiters.close()  # any pull still waiting answers "no change" now
            await listener.stop()
            pool.close()

    async def push(request: Request) -> Response:
        who, body = await _authed(request, verifier, settings, PushRequest)
        return JSONResponse(await _db(handlers.push_batch, pool, who, body))

    async def pull(request: Request) -> Response:
        who, body = await _authed(request, verifier, settings, PullRequest)
        wait = min(float(body.wait_seconds), settings.live_wait_max_s)
        if wait <= 0 or body.cursor is None or body.after_message_id is not None:
            return JSONResponse(await _db(handlers.pull_window, pool, who, body))
        return JSONResponse(await _live_pull(pool, waiters, who, body, wait))

    async def health(_: Request) -> Response:
        if await run_in_threadpool(db.healthy, pool):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "detail": UNAVAILABLE.detail}, 503,
                            headers=UNAVAILABLE.headers)

    async def metrics_route(_: Request) -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, headers={"Content-Type": content_type})

    return Starlette(
        routes=[
            Route("/v1/push", push, methods=["POST"]),
            Route("/v1/pull", pull, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_route, methods=["GET"]),
        ],
        middleware=[Middleware(Measured), Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES,
                               compresslevel=GZIP_LEVEL)],
        exception_handlers={Problem: _problem, Exception: _unexpected},
        lifespan=lifespan,
    )


async def _authed(
    request: Request, verifier: Verifier, settings: ServerSettings, model: type[M]
) -> tuple[Identity, M]:
    try:
        who = await run_in_threadpool(verifier.verify, request.headers.get("authorization"))
    except AuthError as exc:
        metrics.AUTH_FAILURES.labels(exc.code).inc()
        description = exc.reason.replace('"', "'")
        raise Problem(401, "unauthorized", exc.reason, headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", '
                                f'error_description="{description}"'}) from None
    except KeysUnavailable:
        log.warning("cannot fetch the JWKS to verify a token")
        raise Problem(503, "unavailable", "the signing keys cannot be fetched; retry later",
                      headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    raw = await _body(request, settings.max_body_bytes)
    return who, _parse(model, raw)


async def _body(request: Request, limit: int) -> bytes:
    too_large = Problem(413, "too_large", f"the body is over {limit} bytes (server.max_body_bytes)",
                        headers={"Connection": "close"})
    if declared_too_large(request.headers.get("content-length"), limit):
        raise too_large  # before reading one byte of it
    try:
        return await read_capped(request.stream(), request.headers.get("content-encoding"),
                                 limit)
    except TooLarge:
        raise too_large from None
    except BadEncoding as exc:
        raise Problem(422, "invalid", f"body: {exc}", field="body") from None


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = _field(first["loc"])
        raise Problem(422, "invalid", f"{field}: {first['msg']}", field=field) from None


def _field(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


async def _db(fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> dict[str, Any]:
    try:
        return await run_in_threadpool(fn, *args, **kw)
    except db.DatabaseDown as exc:
        log.warning("database unavailable: %s", exc)
        raise UNAVAILABLE from None
    except handlers.ServerFault:
        raise SERVER_FAULT from None  # logged with its reason by handlers


SERVER_FAULT = Problem(500, "server_error", "the server could not complete the request")


async def _live_pull(pool: ConnectionPool, waiters: Waiters, who: Identity,
                     body: PullRequest, wait_s: float) -> dict[str, Any]:
    """A pull held open until another origin's change for this user commits (live.py).

    Registered before each check of the feed, so a commit notified during the check is not
    slept through; between checks it holds no pooled connection and runs no query.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    with waiters.waiting(who.user_id, body.origin) as waiter:
        metrics.LIVE_WAITING.inc()
        try:
            while True:
                waiter.event.clear()
                answer = await _db(handlers.pull_window, pool, who, body, news_only=True)
                if answer["changed"]:
                    metrics.LIVE_WAKEUPS.inc()
                    return answer
                left = deadline - loop.time()
                if left <= 0 or waiters.closing:
                    return answer
                try:
                    await asyncio.wait_for(waiter.event.wait(), left)
                except TimeoutError:
                    return answer
        finally:
            metrics.LIVE_WAITING.dec()


async def _problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("unexpected error answering a request", exc_info=exc)
    return SERVER_FAULT.response()


class Measured:
    """Counts every request by route and status and times it (outermost middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.REQUESTS.labels(route, str(status)).inc()
            metrics.LATENCY.labels(route).observe(time.perf_counter() - started)


