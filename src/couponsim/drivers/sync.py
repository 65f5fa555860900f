"""The synchronous driver: each effect is executed at once on a redis-py client.

Used by tests, the command line and notebooks. ``run_batch`` advances many
flows in lock step and sends each round of their effects in one pipeline,
which is how a single Python process gets near Redis's own rate.
"""

from collections.abc import Sequence
from typing import Any, TypeVar

import redis

from couponsim.connection import connect, redact
from couponsim.effects import Command, Effect, Script
from couponsim.errors import RedisUnavailable
from couponsim.flows import Flow
from couponsim.scripts import ScriptRegistry

T = TypeVar("T")

_DOWN = (redis.ConnectionError, redis.TimeoutError)


class SyncDriver:
    """Runs flows against one client; Redis errors of the network kind become
    :class:`RedisUnavailable` naming the URL."""

    def __init__(self, client: redis.Redis, url: str = "redis") -> None:
        self.client = client
        self.url = redact(url)
        self.scripts = ScriptRegistry(client)

    @classmethod
    def from_url(cls, url: str) -> "SyncDriver":
        return cls(connect(url), url)

    def execute(self, effect: Effect) -> Any:
        """Execute one effect now and return its result."""
        try:
            return self._send(self.client, effect)
        except _DOWN as exc:
            raise RedisUnavailable(self.url, str(exc)) from exc

    def run(self, flow: Flow[T]) -> T:
        """Run one flow to its end and return its value."""
        try:
            effect = next(flow)
            while True:
                effect = flow.send(self.execute(effect))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def run_batch(self, flows: Sequence[Flow[T]]) -> list[T]:
        """Run many independent flows, one pipeline per round of effects.

        Only for flows that do not depend on each other's effects within a
        round (e.g. many one-script issue requests); results keep the order of
        ``flows``. An error raised by a command is thrown into its own flow.
        """
        results: list[Any] = [None] * len(flows)
        pending: dict[int, Effect] = {}
        for index, flow in enumerate(flows):
            try:
                pending[index] = next(flow)
            except StopIteration as stop:
                results[index] = stop.value
        while pending:
            pipe = self.client.pipeline(transaction=False)
            for effect in pending.values():
                self._send(pipe, effect)
            try:
                replies = pipe.execute(raise_on_error=False)
            except _DOWN as exc:
                raise RedisUnavailable(self.url, str(exc)) from exc
            advanced: dict[int, Effect] = {}
            for (index, _effect), reply in zip(pending.items(), replies, strict=True):
                flow = flows[index]
                try:
                    if isinstance(reply, Exception):
                        advanced[index] = flow.throw(reply)
                    else:
                        advanced[index] = flow.send(reply)
                except StopIteration as stop:
                    results[index] = stop.value
            pending = advanced
        return results

    def _send(self, target: Any, effect: Effect) -> Any:
        match effect:
            case Command(name, args):
                return target.execute_command(name, *args)
            case Script(name, keys, args):
                return self.scripts[name](keys=list(keys), args=list(args), client=target)
        raise TypeError(f"not an effect: {effect!r}")
