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
    """Redis executes one command at a time: each effect waits its turn, runs against
    the store at the moment it is served, and holds the server for its service time."""

    def __init__(self, env: simpy.Environment, execute: Callable[[Effect], Any],
                 service_ms: Callable[[Effect], float], servers: int = 1) -> None:
        self.env = env
        self.execute = execute
        self.service_ms = service_ms
        self.queue = Server(env, capacity=servers)
        self.waits_ms: list[float] = []
        """Time each effect waited for its turn, in order of service."""

    def serve(self, effect: Effect) -> Generator[simpy.Event, Any, Any]:
        arrived = self.env.now
        with self.queue.request() as turn:
            yield turn
            self.waits_ms.append(self.env.now - arrived)
            result = self.execute(effect)
            yield self.env.timeout(self.service_ms(effect))
        return result
