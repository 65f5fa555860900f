"""The asyncio driver: each effect is awaited on redis.asyncio, for the service.

It mirrors :class:`~couponsim.drivers.sync.SyncDriver` effect by effect, so a
flow behaves the same under both. The repository is synchronous SQLAlchemy:
a ``DbCall`` runs in a worker thread (``asyncio.to_thread``) so that one slow
transaction never stalls the event loop and every other request with it.

With ``coalesce``, the single commands and scripts that concurrent requests
send in one turn of the event loop leave as one pipeline (one round trip, one
write, one read): under a crowd, the cost of a request is mostly the round trip
and redis-py's per-call overhead, not Redis. Each effect stays atomic on its
own, and no two of them ever needed to be atomic together: this is what
concurrent separate calls would have done, in the same order.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from couponsim.connection import redact
from couponsim.drivers.sync import wall_clock_ms
from couponsim.effects import Command, DbCall, Effect, Now, Pause, Pipeline, Script
from couponsim.errors import RedisUnavailable
from couponsim.flows import Flow
from couponsim.persistence.repository import Repository
from couponsim.scripts import script_source

T = TypeVar("T")

_DOWN = (redis.ConnectionError, redis.TimeoutError)


async def forget_idle_connections(client: "redis.asyncio.Redis") -> None:
    """Close every idle connection of ``client``'s pool: each connects anew when next used.

    For a caller that has just seen Redis go away (a restart, a failover to the
    same address). Its other pooled connections died with it, and redis.asyncio
    8.1 hands them out again unchecked (for RESP3 it skips the pool's test for
    a closed socket: redis/redis-py#4260), so without this the first call on
    each of them fails, even once Redis is back. The lock the pool hands
    connections out under is held meanwhile (a blocking pool's condition, a
    plain pool's lock; both private, hence looked up): no request is given a
    connection that is being closed under it. Connections in use are left alone.
    """
    pool = client.connection_pool
    guard = getattr(pool, "_condition", None) or getattr(pool, "_lock", None)
    async with guard or contextlib.nullcontext():
        with contextlib.suppress(Exception):
            await pool.disconnect(inuse_connections=False)


class AsyncDriver:
    """Runs flows against one redis.asyncio client and, optionally, one repository.

    Redis errors of the network kind become :class:`RedisUnavailable` naming
    the URL, as in the sync driver; any error is thrown into the flow, which
    decides what it means.
    """

    def __init__(self, client: "redis.asyncio.Redis", url: str = "redis",
                 repository: Repository | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock_ms: Callable[[], int] = wall_clock_ms, coalesce: bool = False) -> None:
        self.client = client
        self.url = redact(url)
        self.repository = repository
        self.coalesce = coalesce
        self._scripts: dict[str, AsyncScript] = {}
        self._sleep = sleep
        self._clock_ms = clock_ms
        self._pending: list[tuple[Command | Script, asyncio.Future[Any]]] = []
        self.round_trips = 0
        """Pipelines sent for coalesced effects: with ``requests`` it tells the batching."""

    async def execute(self, effect: Effect) -> Any:
        """Execute one effect and return its result."""
        match effect:
            case Command() | Script() if self.coalesce:
                return await self._redis(self._coalesced(effect))
            case Command() | Script():
                return await self._redis(self._send(self.client, effect))
            case Pipeline(commands, atomic):
                return await self._redis(self._pipeline(commands, atomic))
            case DbCall(method, args):
                if self.repository is None:
                    raise RuntimeError(f"{method}: this driver was given no database")
                return await asyncio.to_thread(getattr(self.repository, method), *args)
            case Pause(seconds):
                await self._sleep(seconds)
                return None
            case Now():
                return self._clock_ms()
        raise TypeError(f"not an effect: {effect!r}")

    def now_ms(self) -> int:
        """The driver's clock, for a caller that must hand a flow the time."""
        return self._clock_ms()

    async def run(self, flow: Flow[T]) -> T:
        """Run one flow to its end and return its value.

        The same loop as :func:`couponsim.drivers.finish`, with an await per
        effect: a failing effect is thrown into the flow.
        """
        try:
            effect = next(flow)
            while True:
                try:
                    result = await self.execute(effect)
                except Exception as exc:  # the flow decides; unhandled, it comes back out
                    effect = flow.throw(exc)
                else:
                    effect = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def script(self, name: str) -> AsyncScript:
        """The lua/ script ``name`` on this client (EVALSHA; loaded again on NOSCRIPT)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(script_source(name))
        return script

    def _coalesced(self, effect: Command | Script) -> "asyncio.Future[Any]":
        """Queue ``effect`` for the pipeline of this loop turn (sent once the turn ends)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((effect, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        asyncio.get_running_loop().create_task(self._send_batch(batch))

    async def _send_batch(self, batch: list[tuple[Command | Script, "asyncio.Future[Any]"]]
                          ) -> None:
        self.round_trips += 1
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for effect, _future in batch:
                    match effect:
                        case Script(name, keys, args):   # EVALSHA alone: no SCRIPT EXISTS
                            pipe.execute_command("EVALSHA", self.script(name).sha,
                                                 len(keys), *keys, *args)
                        case Command(name, args, options):
                            pipe.execute_command(name, *args, **dict(options))
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:   # the round trip failed: every caller hears of it
            for _effect, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (effect, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):   # did not run: load it, send it alone
                try:
                    reply = await self._send(self.client, effect)
                except Exception as exc:
                    reply = exc
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _redis(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except _DOWN as exc:
            if isinstance(exc, redis.ConnectionError) and not isinstance(
                    exc, redis.BusyLoadingError | redis.exceptions.MaxConnectionsError):
                await forget_idle_connections(self.client)
            raise RedisUnavailable(self.url, str(exc)) from exc

    async def _pipeline(self, effects: Sequence[Effect], atomic: bool) -> list[Any]:
        async with self.client.pipeline(transaction=atomic) as pipe:
            for effect in effects:
                await self._send(pipe, effect)
            return await pipe.execute(raise_on_error=False)

    async def _send(self, target: Any, effect: Effect) -> Any:
        match effect:
            case Command(name, args, options):
                return await target.execute_command(name, *args, **dict(options))
            case Script(name, keys, args):
                return await self.script(name)(keys=list(keys), args=list(args), client=target)
        raise TypeError(f"not a Redis effect: {effect!r}")
