"""The model's shared parts: server queues that scale to a flash crowd (a SimPy
resource, and servers timed by formula), and Redis as one such server. The model
and its validation against queueing theory use the very same Redis component."""

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import simpy

from couponsim.effects import Effect


class _Fifo(deque[Any]):
    """A request queue that serves its head in O(1): SimPy's default list pays
    O(n) for every grant, which dominates with a flash crowd queued on one server.
    PutQueue is SimPy's documented extension point (REFERENCE.md)."""

    def pop(self, index: int = -1) -> Any:
        if index == 0:
            return self.popleft()
        item = self[index]
        del self[index]
        return item


class Server(simpy.Resource):
    PutQueue = _Fifo


class FifoServers:
    """``count`` servers sharing one first-come-first-served queue, for jobs whose
    service time is known when they arrive: by Lindley's recursion a job starts when it
    arrives or when the first server comes free, whichever is later, so a job's whole
    wait is known at once and costs its process one timeout, where a
    :class:`simpy.Resource` costs a request, a release and their events."""

    def __init__(self, env: simpy.Environment, count: int) -> None:
        self.env = env
        self.free_at = [env.now] * count
        """When each server comes free: a heap."""

    def take(self, service_ms: float) -> float:
        """When a job arriving now, holding a server for ``service_ms``, starts."""
        start = max(self.env.now, heapq.heappop(self.free_at))
        heapq.heappush(self.free_at, start + service_ms)
        return start


def take_together(env: simpy.Environment, service_ms: float,
                  *pools: FifoServers | None) -> float:
    """When a job arriving now starts that needs a server of each pool at once (a
    process's turn and a core of the host), holding them for ``service_ms``. A pool that
    is None is not there: with none, the job starts now."""
    present = [pool for pool in pools if pool is not None]
    start = max([env.now, *(pool.free_at[0] for pool in present)])
    for pool in present:
        heapq.heapreplace(pool.free_at, start + service_ms)
    return start


class RedisServer:
    """Redis executes one command at a time: each effect waits its turn and holds the
    server for its own service time; its reply leaves at the end of that time.

    A FIFO server's timing is known the moment an effect arrives (Lindley's
    recursion, :class:`FifoServers`), so an effect costs one timeout, not a queue
    process's events. What the store must see is only the order of service. So an
    effect runs against the store when its reply is due, together with every effect
    whose turn is fixed by then, as one pipeline, a batched script's calls merged
    into one call (``execute_many``), as the live driver coalesces the requests of
    one loop turn. Nothing that arrives later can come before them, so every effect
    finds the store as a server executing it at its start would leave it, and the
    store's round trips grow with virtual time, not with the crowd (#6: a flash
    crowd's wall time went to the store's work per effect).

    The store may so run ahead of the clock, which only a reader from outside the
    model (the sampler, the failover's copy) could see. Such a reader books the
    moments it will look (:meth:`will_look_at`) and calls :meth:`look` then; no
    effect that starts after a booked moment runs before it. One that cannot know
    its moment ahead keeps the store to the clock meanwhile (:meth:`watched`).

    With more than one server (the queueing checks' M/G/c) each effect takes the
    server that comes free first, still first come, first served.
    """

    def __init__(self, env: simpy.Environment,
                 execute_many: Callable[[list[Effect]], list[Any]],
                 service_ms: Callable[[Effect], float], servers: int = 1) -> None:
        self.env = env
        self.execute_many = execute_many
        self.service_ms = service_ms
        self.servers = FifoServers(env, servers)
        self.unexecuted: deque[_Call] = deque()
        """Effects whose turn is fixed but that have not run yet, in order of service."""
        self.looks: list[float] = []
        """When readers from outside the model will look at the store: a heap."""
        self.watchers = 0
        """Readers from outside who may look at any moment: the store keeps to the
        clock while there are any."""
        self.waits_ms: list[float] = []
        """Time each effect waited for its turn, in order of service."""
        self.batches = 0
        """Calls of ``execute_many``: the store's round trips."""

    def serve(self, effect: Effect, back_ms: float = 0.0
              ) -> Generator[simpy.Event, Any, Any]:
        """Serve ``effect`` and return its reply ``back_ms`` after its service ends."""
        now = self.env.now
        service_ms = self.service_ms(effect)
        start = self.servers.take(service_ms)
        self.waits_ms.append(start - now)
        call = _Call(effect, start)
        self.unexecuted.append(call)
        yield self.env.timeout(start + service_ms + back_ms - now)
        if not call.executed:
            self._execute_until(self._next_look())
        if isinstance(call.reply, Exception):
            raise call.reply
        return call.reply

    def will_look_at(self, at_ms: float) -> None:
        """Book a look at the store at ``at_ms``: until then, the store may not run
        past it."""
        heapq.heappush(self.looks, at_ms)

    @contextmanager
    def watched(self) -> Iterator[None]:
        """Keep the store to the clock meanwhile, for a reader from outside the model
        who cannot book its look ahead."""
        self.watchers += 1
        try:
            yield
        finally:
            self.watchers -= 1

    def look(self) -> None:
        """Bring the store to now (every effect started by now has run, no other):
        for a reader from outside the model, at a moment it booked."""
        self._execute_until(self.env.now)

    def _next_look(self) -> float:
        if self.watchers:
            return self.env.now
        while self.looks and self.looks[0] < self.env.now:
            heapq.heappop(self.looks)         # that reader has looked, or never will
        return self.looks[0] if self.looks else math.inf

    def _execute_until(self, until_ms: float) -> None:
        """Run every effect that starts by ``until_ms``, in order."""
        waiting = self.unexecuted
        while waiting and waiting[0].start <= until_ms:
            taken: list[_Call] = []
            while waiting and waiting[0].start <= until_ms and len(taken) < MAX_BATCH:
                taken.append(waiting.popleft())
            self.batches += 1
            replies = self.execute_many([call.effect for call in taken])
            for call, reply in zip(taken, replies, strict=True):
                call.reply, call.executed = reply, True


class _Call:
    __slots__ = ("effect", "executed", "reply", "start")

    def __init__(self, effect: Effect, start: float) -> None:
        self.effect = effect
        self.start = start
        self.reply: Any = None
        self.executed = False


MAX_BATCH = 1_000
"""Effects one call of ``execute_many`` takes at most: a pipeline the size of a
crowd's burst would hold every reply in memory at once, and gain nothing past this
size."""
