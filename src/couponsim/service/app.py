"""The FastAPI app, built from a :class:`ServiceConfig`.

Everything an instance holds is made in the lifespan and kept on ``app.state``:
the asyncio driver (Redis client + repository), the gateway (breaker and limiters
are per instance by design), the status hub and the metrics. Two pure ASGI
middlewares sit outside the routes: a body limit that refuses oversized bodies
before they are parsed, and a timer (pure ASGI, so a status stream is timed to
its first byte, not to its end).
"""

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from couponsim.connection import close_async, connect_async, pubsub_client
from couponsim.drivers.aio import AsyncDriver
from couponsim.flows.gateway import Gateway
from couponsim.persistence.repository import Repository
from couponsim.service import problem
from couponsim.service.config import ServiceConfig, StreamVariant
from couponsim.service.keyed import Keyed
from couponsim.service.metrics import Metrics
from couponsim.service.page import router as page_router
from couponsim.service.routes import IssueFastPath, router
from couponsim.service.sse import StatusHub
from couponsim.sold_out import SoldOutFlags


class BodyLimit:
    """Refuse a body larger than ``max_bytes`` (413) before any route reads it: by its
    declared length at once, or, for a chunked body, as soon as the bytes read pass the
    limit. A chunked body (at most ``max_bytes``) is read here and handed on whole, so
    that the refusal is this middleware's answer and never a route's parse error."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await problem.Problem(400, "bad-content-length", "Malformed Content-Length"
                                  ).response()(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._too_large().response()(scope, receive, send)
            return
        if declared is not None or b"chunked" not in headers.get(b"transfer-encoding", b""):
            # No body (a GET, a stream), or one of a declared length within the limit:
            # the server delivers no more than the length declared, so it goes on as is.
            await self.app(scope, receive, send)
            return
        chunks, read = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":       # the client left
                return
            chunks.append(message.get("body", b""))
            read += len(chunks[-1])
            if read > self.max_bytes:
                await self._too_large().response()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> problem.Problem:
        return problem.Problem(413, "body-too-large", "The request body is too large",
                               f"at most {self.max_bytes} bytes")


class Timer:
    """Time to the response's start, by route template: into the latency histogram, and
    to the client as ``Server-Timing: app;dur=MS`` (W3C Server Timing). A client that
    times its own requests can then tell the service's part from its own and the
    network's: the twin check's load generator shares two cores with the service."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                self.metrics.latency.labels(getattr(route, "path", "unmatched")).observe(elapsed)
                message = {**message, "headers": [
                    *message.get("headers", ()),
                    (b"server-timing", f"app;dur={elapsed * 1000:.3f}".encode())]}
            await send(message)

        await self.app(scope, receive, timed)


def _freeze_what_lives_as_long_as_the_process() -> None:
    """Move what exists once the app is up (modules, the app, its clients) out of the
    cycle collector's sight: a full collection then walks only what requests made.
    Walking it all took about 80 ms, every few thousand presses: the issue route's p99
    was 78 ms where the bare route's was 14 (benchmarks/service_rate.py); frozen, 13.5
    ms, with 16% less CPU a press. Garbage is collected first, so none is kept."""
    gc.collect()
    gc.freeze()


def build_app(config: ServiceConfig, gateway: Gateway | None = None) -> FastAPI:
    """The service; ``gateway`` lets a caller tune the breaker and limiters."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = await connect_async(config.redis_url)
        repository = Repository.from_url(config.db_url)
        hardened = config.stream is StreamVariant.HARDENED
        state.gateway.sold_out = SoldOutFlags() if config.sold_out_flag and hardened else None
        # On a cluster the hub listens on one node, which hears every PUBLISH.
        hub = StatusHub(pubsub_client(client), sold_out=state.gateway.sold_out)
        app.state.driver = AsyncDriver(client, config.redis_url, repository,
                                       coalesce=config.coalesce)
        app.state.hub = hub
        try:
            if hardened:
                await hub.start()
            _freeze_what_lives_as_long_as_the_process()
            yield
        finally:
            await hub.close()
            await close_async(client)   # and a cluster's node clients
            repository.engine.dispose()

    app = FastAPI(title="couponsim", version="0.1.0", lifespan=lifespan,
                  summary="Flash-sale coupons on Redis: issue, status stream, waiting room, "
                          "checkout. Errors are RFC 9457 problem documents.")
    state: Any = app.state
    state.config, state.metrics = config, metrics
    state.gateway = gateway or config.gateway()
    state.keyed = Keyed(config.secret.encode(), config.proof_ttl_s)
    problem.install(app)
    app.include_router(router)
    app.router.routes.insert(0, IssueFastPath())   # before the included routers
    app.include_router(page_router)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(Timer, metrics=metrics)
    return app
