"""The synchronous driver: each effect is executed at once, in the calling thread.

Used by tests, the command line, consumers in threads and notebooks.
``run_batch`` advances many flows in lock step and sends each round of their
Redis effects in one pipeline, which is how a single Python process gets near
Redis's own rate.

The same driver runs on one Redis or on a Redis Cluster (``redis+cluster://``):
every script and every atomic pipeline a flow sends keeps its keys in one slot,
so redis-py's RedisCluster routes it whole to the shard that owns the slot.
"""

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from couponsim.connection import RedisClient, connect, redact
from couponsim.drivers import batches, finish
from couponsim.effects import Command, DbCall, Effect, Now, Pause, Pipeline, Script
from couponsim.errors import RedisUnavailable
from couponsim.flows import Flow
from couponsim.keys import single_slot
from couponsim.persistence.repository import Repository
from couponsim.scripts import ScriptRegistry

T = TypeVar("T")

_DOWN = (redis.ConnectionError, redis.TimeoutError)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SyncDriver:
    """Runs flows against one Redis client and, for flows that persist, one repository.

    Redis errors of the network kind become :class:`RedisUnavailable` naming
    the URL; the repository raises its own typed errors.

    ``wait_replicas=(n, timeout_ms)`` makes every script call wait (Redis
    ``WAIT``) until ``n`` replicas have the script's writes: a failover then
    loses only writes whose caller was told "unavailable", never one it was
    told succeeded. A write not confirmed in time raises
    :class:`RedisUnavailable`: it may or may not survive, as after a timeout.
    """

    def __init__(self, client: RedisClient, url: str = "redis",
                 repository: Repository | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock_ms: Callable[[], int] = wall_clock_ms,
                 wait_replicas: tuple[int, int] | None = None) -> None:
        self.client = client
        self.url = redact(url)
        self.repository = repository
        self.scripts = ScriptRegistry(client)
        self._sleep = sleep
        self._clock_ms = clock_ms
        self._wait_replicas = wait_replicas

    @classmethod
    def from_url(cls, url: str, repository: Repository | None = None) -> "SyncDriver":
        return cls(connect(url), url, repository)

    def execute(self, effect: Effect) -> Any:
        """Execute one effect now and return its result."""
        match effect:
            case Script() if (wait := self._wait_replicas) is not None:
                return self._redis(lambda: self._script_replicated(effect, *wait))
            case Command() | Script():
                return self._redis(lambda: self._send(self.client, effect))
            case Pipeline(commands, atomic):
                return self._redis(lambda: self._pipeline(commands, atomic))
            case DbCall(method, args):
                if self.repository is None:
                    raise RuntimeError(f"{method}: this driver was given no database")
                return getattr(self.repository, method)(*args)
            case Pause(seconds):
                self._sleep(seconds)
                return None
            case Now():
                return self._clock_ms()
        raise TypeError(f"not an effect: {effect!r}")

    def run(self, flow: Flow[T]) -> T:
        """Run one flow to its end and return its value."""
        return finish(flow, self.execute)  # type: ignore[no-any-return]

    def run_batch(self, flows: Sequence[Flow[T]]) -> list[T | Exception]:
        """Run many independent Redis-only flows, one pipeline per round of effects, in
        which the calls of a script that takes a batch are one call (``drivers.batches``).

        Only for flows that do not depend on each other's effects within a
        round (e.g. many one-script issue requests). Results keep the order of
        ``flows``; a flow that fails has its exception in its place, so one bad
        request never hides the answers of the others.
        """
        results: list[T | Exception] = [RuntimeError("not run")] * len(flows)
        pending: dict[int, Effect] = {}

        def step(index: int, resume: Callable[[], Effect]) -> None:
            try:
                pending[index] = resume()
            except StopIteration as stop:
                results[index] = stop.value
            except Exception as exc:
                results[index] = exc

        for index, flow in enumerate(flows):
            step(index, flow.__next__)
        while pending:
            indexes = list(pending)
            sent: list[Command | Script] = []
            for effect in pending.values():
                if not isinstance(effect, Command | Script):
                    raise TypeError(f"run_batch sends Redis commands only, got {effect!r}")
                sent.append(effect)
            pending.clear()
            for index, answer in zip(indexes, self.execute_many(sent), strict=True):
                flow = flows[index]
                if isinstance(answer, Exception):
                    step(index, partial(flow.throw, answer))
                else:
                    step(index, partial(flow.send, answer))
        return results

    def execute_many(self, effects: Sequence[Command | Script]) -> list[Any]:
        """Commands and scripts of concurrent requests, sent as one pipeline in which the
        calls of a script that takes a batch are one call (``drivers.batches``): each
        effect's reply, or its error, in its place. A Redis that is down fails the call
        (:class:`RedisUnavailable`), as for one effect."""
        if self._wait_replicas is not None and any(isinstance(e, Script) for e in effects):
            raise TypeError("execute_many does not WAIT for replicas: use execute per effect")
        calls = batches.calls(effects)
        replies = self._redis(partial(self._pipeline, [call for call, _n in calls]))
        answers: list[Any] = [None] * len(effects)
        for (_call, members), reply in zip(calls, replies, strict=True):
            for n, answer in zip(members, batches.answers([effects[n] for n in members], reply),
                                 strict=True):
                answers[n] = answer
        return answers

    def _redis(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except _DOWN as exc:
            if isinstance(self.client, RedisCluster):
                # The calls sent to one node's own client (atomic pipelines, WAIT) do
                # not follow a failover as RedisCluster's do: learn the slot map again.
                with suppress(redis.RedisError):
                    self.client.nodes_manager.initialize()
            raise RedisUnavailable(self.url, str(exc)) from exc

    def _pipeline(self, effects: Sequence[Effect], atomic: bool = False) -> list[Any]:
        pipe = (self._slot_owner(effects[0]).pipeline(transaction=True)
                if atomic and isinstance(self.client, RedisCluster)
                else self.client.pipeline(transaction=atomic))
        for effect in effects:
            self._send(pipe, effect, evalsha=not atomic)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if not atomic:
            # Scripts went as EVALSHA alone (redis-py would ask SCRIPT EXISTS first, one
            # more round trip per pipeline), and a restarted or promoted server has none:
            # a NOSCRIPT reply means the script did not run, so sending that one effect
            # again (which loads it) is safe.
            replies = [self._send(self.client, effect) if isinstance(reply, NoScriptError)
                       else reply for effect, reply in zip(effects, replies, strict=True)]
        return replies

    def _slot_owner(self, effect: Effect) -> redis.Redis:
        """The plain client of the cluster node serving ``effect``'s first key.

        Atomic pipelines on a cluster go there as ordinary MULTI/EXEC: redis-py
        8.1's cluster transactions skip the usual reply parsing (XRANGE, HGETALL,
        XPENDING come back raw). Every key of one MULTI shares a slot, or the
        node itself refuses it with CROSSSLOT.
        """
        assert isinstance(self.client, RedisCluster)
        match effect:
            case Command(name, args):
                slot = self.client.determine_slot(name, *args)
            case Script(_name, keys):
                slot = key_slot(keys[0].encode())
            case _:
                slot = None
        if slot is None:
            raise TypeError(f"no key to route by in {effect!r}")
        node = self.client.nodes_manager.get_node_from_slot(slot)
        return node.redis_connection  # type: ignore[no-any-return]

    def _script_replicated(self, effect: Script, replicas: int, timeout_ms: int) -> Any:
        """The script, then WAIT on the same connection: WAIT counts the replicas that
        have this connection's writes, so both must go to one server in one pipeline
        (on a cluster: the shard owning the script's slot)."""
        target = (self._slot_owner(effect) if isinstance(self.client, RedisCluster)
                  else self.client)
        pipe = target.pipeline(transaction=False)
        self.scripts[effect.name](keys=list(effect.keys), args=list(effect.args), client=pipe)
        pipe.wait(replicas, timeout_ms)
        reply, confirmed = pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if confirmed < replicas:
            raise redis.TimeoutError(
                f"{effect.name}: {confirmed} of {replicas} replicas confirmed in {timeout_ms} ms")
        return reply

    def _send(self, target: Any, effect: Effect, evalsha: bool = False) -> Any:
        """``effect`` on ``target`` (a client or a pipeline); ``evalsha``: a script as
        EVALSHA alone, its NOSCRIPT left to the caller."""
        match effect:
            case Command("SCAN", (cursor, "MATCH", pattern, *rest)) \
                    if isinstance(target, RedisCluster):
                return _scan_cluster(target, cursor, str(pattern), rest)
            case Command(name, args, options):
                return target.execute_command(name, *args, **dict(options))
            case Script(name, keys, args) if evalsha:
                # As a command (redis-py refuses the evalsha method in a cluster
                # pipeline, not the command: it routes EVALSHA by its keys).
                sha = self.scripts[name].sha
                return target.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            case Script(name, keys, args):
                return self.scripts[name](keys=list(keys), args=list(args), client=target)
        raise TypeError(f"not a Redis effect: {effect!r}")


def _scan_cluster(cluster: RedisCluster, cursor: Any, pattern: str,
                  rest: Sequence[Any]) -> Any:
    """SCAN on a cluster, which redis-py answers with one cursor per shard. A pattern
    with a hash tag matches keys of that tag's slot only: its shard alone is scanned,
    with one plain cursor (as Redis 8 does). Any other (``coupon:info:{*``: every
    event) matches keys on every shard: each primary is scanned to its end in this
    one call, and the flow sees one finished scan (cursor 0) with every key."""
    if single_slot(pattern):
        node = cluster.nodes_manager.get_node_from_slot(key_slot(pattern.encode()))
        return node.redis_connection.execute_command("SCAN", cursor, "MATCH", pattern, *rest)
    found: list[Any] = []
    for node in cluster.get_primaries():  # type: ignore[no-untyped-call]
        node_cursor = 0
        while True:
            node_cursor, keys = node.redis_connection.execute_command(
                "SCAN", node_cursor, "MATCH", pattern, *rest)
            found.extend(keys)
            if int(node_cursor) == 0:
                break
    return 0, found
