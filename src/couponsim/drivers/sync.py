"""The synchronous driver: each effect is executed at once, in the calling thread.

Used by tests, the command line, consumers in threads and notebooks.
``run_batch`` advances many flows in lock step and sends each round of their
Redis effects in one pipeline, which is how a single Python process gets near
Redis's own rate.
"""

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import redis

from couponsim.connection import connect, redact
from couponsim.drivers import finish
from couponsim.effects import Command, DbCall, Effect, Now, Pause, Pipeline, Script
from couponsim.errors import RedisUnavailable
from couponsim.flows import Flow
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
    """

    def __init__(self, client: redis.Redis, url: str = "redis",
                 repository: Repository | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.client = client
        self.url = redact(url)
        self.repository = repository
        self.scripts = ScriptRegistry(client)
        self._sleep = sleep
        self._clock_ms = clock_ms

    @classmethod
    def from_url(cls, url: str, repository: Repository | None = None) -> "SyncDriver":
        return cls(connect(url), url, repository)

    def execute(self, effect: Effect) -> Any:
        """Execute one effect now and return its result."""
        match effect:
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
        """Run many independent Redis-only flows, one pipeline per round of effects.

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
            effects = tuple(pending.items())
            pending.clear()
            for _index, effect in effects:
                if not isinstance(effect, Command | Script):
                    raise TypeError(f"run_batch sends Redis commands only, got {effect!r}")
            replies = self._redis(partial(self._pipeline, [effect for _, effect in effects]))
            for (index, _effect), reply in zip(effects, replies, strict=True):
                flow = flows[index]
                if isinstance(reply, Exception):
                    step(index, partial(flow.throw, reply))
                else:
                    step(index, partial(flow.send, reply))
        return results

    def _redis(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except _DOWN as exc:
            raise RedisUnavailable(self.url, str(exc)) from exc

    def _pipeline(self, effects: Sequence[Effect], atomic: bool = False) -> list[Any]:
        pipe = self.client.pipeline(transaction=atomic)
        for effect in effects:
            self._send(pipe, effect)
        return pipe.execute(raise_on_error=False)

    def _send(self, target: Any, effect: Effect) -> Any:
        match effect:
            case Command(name, args, options):
                return target.execute_command(name, *args, **dict(options))
            case Script(name, keys, args):
                return self.scripts[name](keys=list(keys), args=list(args), client=target)
        raise TypeError(f"not a Redis effect: {effect!r}")
