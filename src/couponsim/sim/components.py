"""The model's shared parts: a server queue that scales to a flash crowd, and Redis
as one such server. The model and its validation against queueing theory use the
very same Redis component."""

from collections import deque
from collections.abc import Callable, Generator
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


class RedisServer:
    """Redis executes one command at a time: each effect waits its turn and holds the
    server for its own service time, answering at the end of it.

    The effects waiting when the server comes free run against the store together, at
    that moment, through ``execute_many`` (the store sends them as one pipeline, a
    batched script's calls merged into one call, as the live driver coalesces the
    requests of one loop turn). The queue's timing stays that of a one-at-a-time
    server, and nothing reaches the store in between, since every Redis effect of the
    model queues here; what is shared is the store's work per effect, where a flash
    crowd's wall time went (#6: 79% of it in fakeredis's script dispatch). With more
    than one server (the queueing checks' M/M/c) each takes one effect at a time.
    """

    def __init__(self, env: simpy.Environment,
                 execute_many: Callable[[list[Effect]], list[Any]],
                 service_ms: Callable[[Effect], float], servers: int = 1) -> None:
        self.env = env
        self.execute_many = execute_many
        self.service_ms = service_ms
        self.batch = MAX_BATCH if servers == 1 else 1
        self.waiting: deque[tuple[Effect, float, simpy.Event]] = deque()
        self.idle: list[simpy.Event] = []
        """One event per idle server, triggered by the next arrival."""
        self.waits_ms: list[float] = []
        """Time each effect waited for its turn, in order of service."""
        self.batches = 0
        """Calls of ``execute_many``: the store's round trips."""
        for _ in range(servers):
            env.process(self._serve_forever())

    def serve(self, effect: Effect) -> Generator[simpy.Event, Any, Any]:
        done = self.env.event()
        self.waiting.append((effect, self.env.now, done))
        if self.idle:
            self.idle.pop().succeed()
        return (yield done)

    def _serve_forever(self) -> Generator[simpy.Event, Any, None]:
        while True:
            if not self.waiting:
                wake = self.env.event()
                self.idle.append(wake)
                yield wake
            taken = [self.waiting.popleft()
                     for _ in range(min(self.batch, len(self.waiting)))]
            self.batches += 1
            replies = self.execute_many([effect for effect, _at, _done in taken])
            for (effect, arrived, done), reply in zip(taken, replies, strict=True):
                self.waits_ms.append(self.env.now - arrived)
                yield self.env.timeout(self.service_ms(effect))
                if isinstance(reply, Exception):
                    done.fail(reply)
                else:
                    done.succeed(reply)


MAX_BATCH = 1_000
"""Effects one turn of the server takes at most: a pipeline the size of a crowd's
burst would hold every reply in memory at once, and gain nothing past this size."""
