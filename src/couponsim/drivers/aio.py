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
concurrent separate calls would have done, in the same order. The calls of a
script that takes a batch (issue, the shared rate limiter) with the same shared
part leave as one call of the script, at the place of the first of them: what
those calls would have done one after the other, with one script run.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from couponsim.connection import AsyncRedisClient, node_client, node_clients, redact
from couponsim.drivers import batches
from couponsim.drivers.sync import wall_clock_ms
from couponsim.effects import Command, DbCall, Effect, Now, Pause, Pipeline, Script
from couponsim.errors import RedisUnavailable
from couponsim.flows import Flow
from couponsim.keys import single_slot
from couponsim.persistence.repository import Repository
from couponsim.scripts import script_source

T = TypeVar("T")

_DOWN = (redis.ConnectionError, redis.TimeoutError)


async def forget_idle_connections(client: AsyncRedisClient) -> None:
    """Close every idle connection of ``client``'s pool: each connects anew when next used.

    For a caller that has just seen Redis go away (a restart, a failover to the
    same address). Its other pooled connections died with it, and redis.asyncio
    8.1 hands them out again unchecked (for RESP3 it skips the pool's test for
    a closed socket: redis/redis-py#4260), so without this the first call on
    each of them fails, even once Redis is back. The lock the pool hands
    connections out under is held meanwhile (a blocking pool's condition, a
    plain pool's lock; both private, hence looked up): no request is given a
    connection that is being closed under it. Connections in use are left alone.

    RedisCluster keeps a pool per node and drops a failed node's idle connections
    itself; what it does not do is renew the plain clients made for its nodes
    (atomic pipelines, pub/sub: :func:`~couponsim.connection.node_client`), nor
    learn the slot map again for them after a failover: both are done here.
    """
    if isinstance(client, RedisCluster):
        with contextlib.suppress(Exception):
            await client.nodes_manager.initialize()
        for plain in node_clients(client):
            await forget_idle_connections(plain)
        return
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

    def __init__(self, client: AsyncRedisClient, url: str = "redis",
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
        self.calls_sent = 0
        """Calls in those pipelines: the calls of one batched script count as one."""

    async def execute(self, effect: Effect) -> Any:
        """Execute one effect and return its result."""
        match effect:
            case Command("SCAN") if isinstance(self.client, RedisCluster):
                return await self._redis(self._send(self.client, effect))   # by node: _send
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
                if type(effect) is Now:   # no await for the clock: several on every press
                    effect = flow.send(self._clock_ms())
                    continue
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
        calls = [(effect, [batch[n] for n in members])
                 for effect, members in batches.calls([effect for effect, _f in batch])]
        self.calls_sent += len(calls)
        try:
            # On a cluster: one pipeline per node, each command routed by its key (EVALSHA
            # by its KEYS), the nodes' shares sent at once; NOSCRIPT is handled below.
            async with self.client.pipeline(transaction=False) as pipe:
                for effect, _members in calls:
                    match effect:
                        case Script(name, keys, args):   # EVALSHA alone: no SCRIPT EXISTS
                            pipe.execute_command("EVALSHA", self.script(name).sha,
                                                 len(keys), *keys, *args)
                        case Command(name, args, options):
                            pipe.execute_command(name, *args,  # type: ignore[arg-type]
                                                 **dict(options))
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:   # the round trip failed: every caller hears of it
            for _effect, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (effect, members), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):   # did not run: load it, send it alone
                try:
                    reply = await self._send(self.client, effect)
                except Exception as exc:
                    reply = exc
            answers = batches.answers([member for member, _future in members], reply)
            for (_member, future), answer in zip(members, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _redis(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except _DOWN as exc:
            if isinstance(exc, redis.ConnectionError) and not isinstance(
                    exc, redis.BusyLoadingError | redis.exceptions.MaxConnectionsError):
                await forget_idle_connections(self.client)
            raise RedisUnavailable(self.url, str(exc)) from exc

    async def _pipeline(self, effects: Sequence[Effect], atomic: bool) -> list[Any]:
        cluster = isinstance(self.client, RedisCluster)
        target: AsyncRedisClient = self.client
        if atomic and isinstance(self.client, RedisCluster):
            # MULTI/EXEC as usual on the plain client of the node owning the slot (every
            # key of one MULTI shares it, or the node refuses with CROSSSLOT): redis-py
            # 8.1's async cluster transactions run each queued command in a thread of its
            # own and skip the usual reply parsing, as the sync ones do.
            target = node_client(self.client, await self._slot_owner(effects[0]))
        async with target.pipeline(transaction=atomic) as pipe:
            for effect in effects:
                await self._send(pipe, effect)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if cluster and not atomic:
            # redis-py's cluster pipeline does not load scripts first as the plain one
            # does, and a promoted replica has none: a NOSCRIPT reply means the script
            # did not run, so sending that one effect again (which loads it) is safe.
            replies = [await self._send(self.client, effect)
                       if isinstance(reply, NoScriptError) else reply
                       for effect, reply in zip(effects, replies, strict=True)]
        return replies

    async def _slot_owner(self, effect: Effect) -> ClusterNode:
        """The cluster node serving ``effect``'s first key (the sync driver's twin)."""
        assert isinstance(self.client, RedisCluster)
        await self.client.initialize()   # the slot map, if no call has learnt it yet
        match effect:
            case Command(name, args):
                # redis.asyncio's name for the sync client's determine_slot
                slot = await self.client._determine_slot(name, *args)
            case Script(_name, keys) if keys:
                slot = self.client.keyslot(keys[0])
            case _:
                raise TypeError(f"no key to route by in {effect!r}")
        return self.client.nodes_manager.get_node_from_slot(slot)

    async def _scan_cluster(self, cursor: object, pattern: str, rest: Sequence[object]
                            ) -> Any:
        """SCAN on a cluster. A pattern with a hash tag only matches keys of that tag's
        slot: its node alone is scanned, with one plain cursor, as in the sync driver.
        Any other pattern (``coupon:info:{*``: every event) matches keys on every
        shard: each primary is scanned to its end in this one call, and the flow sees
        one finished scan (cursor 0) with every key found."""
        assert isinstance(self.client, RedisCluster)
        await self.client.initialize()
        if single_slot(pattern):
            node = self.client.nodes_manager.get_node_from_slot(self.client.keyslot(pattern))
            plain = node_client(self.client, node)
            return await plain.execute_command(  # type: ignore[no-untyped-call]
                "SCAN", cursor, "MATCH", pattern, *rest)
        found: list[Any] = []
        for node in self.client.get_primaries():
            plain, node_cursor = node_client(self.client, node), 0
            while True:
                node_cursor, keys = await plain.execute_command(  # type: ignore[no-untyped-call]
                    "SCAN", node_cursor, "MATCH", pattern, *rest)
                found.extend(keys)
                if int(node_cursor) == 0:
                    break
        return 0, found

    async def _send(self, target: Any, effect: Effect) -> Any:
        match effect:
            case Command("SCAN", (cursor, "MATCH", pattern, *rest)) \
                    if isinstance(target, RedisCluster):
                return await self._scan_cluster(cursor, str(pattern), rest)
            case Command(name, args, options) if isinstance(target, ClusterPipeline):
                # Queued, not awaited: awaiting a cluster pipeline empties its queue.
                return target.execute_command(name, *args,  # type: ignore[arg-type]
                                              **dict(options))
            case Command(name, args, options):
                return await target.execute_command(name, *args, **dict(options))
            case Script(name, keys, args) if isinstance(target, ClusterPipeline):
                # As in the sync driver: EVALSHA as a command, routed by its keys.
                return target.execute_command("EVALSHA", self.script(name).sha,
                                              len(keys), *keys, *args)
            case Script(name, keys, args):
                return await self.script(name)(keys=list(keys), args=list(args), client=target)
        raise TypeError(f"not a Redis effect: {effect!r}")

