"""The store as the model's parts reach it: Redis as one server behind a network, and
the database as a small pool of connections.

Every round trip crosses the network (exponential, one way), waits its turn, runs
(on fakeredis or a real Redis, in its order of service) and costs its service time.
The database's transactions cost a time per batch and per row. Effects run through
``driver``, which a failover replaces with the promoted replica's.
"""

from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import numpy as np
import simpy

from couponsim.drivers.simulated import Perform, flow_process
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Command, DbCall, Effect, Pipeline, Script
from couponsim.flows import Flow
from couponsim.sim.components import FifoServers, RedisServer, Server, take_together
from couponsim.sim.records import RequestRecord
from couponsim.sim.scenario import LatencySpec

DATABASE_POOL = 5


class Store:
    def __init__(self, env: simpy.Environment, latency: LatencySpec, driver: SyncDriver,
                 network: np.random.Generator, host: FifoServers | None = None) -> None:
        self.env = env
        self.host = host
        """The cores a transaction's work needs one of (None: it has its own)."""
        self.latency = latency
        self.driver = driver
        """The store Redis effects run on: after a failover, the promoted replica."""
        self.network = network
        self.redis = RedisServer(env, self._execute_many,
                                 lambda effect: _service_ms(
                                     effect, latency.redis_command_ms, latency.redis_script_ms))
        self.database = Server(env, capacity=DATABASE_POOL)
        self.stored_ms: dict[str, float] = {}
        """When each coupon's transaction ended, by request: the model's own record of
        what a live database stamps on a stored row (the twin check compares them)."""

    def perform(self, record: RequestRecord | None) -> Perform:
        """Carry out effects in virtual time, counting ``record``'s Redis commands."""
        latency = self.latency
        network = self.network

        def perform(effect: Effect) -> Generator[simpy.Event, Any, Any]:
            if isinstance(effect, DbCall):
                with self.database.request() as turn:
                    yield turn
                    result = self.driver.execute(effect)
                    rows = len(effect.args[0]) if effect.args and isinstance(
                        effect.args[0], list | tuple) else 1
                    busy_ms = latency.database_batch_ms + rows * latency.database_row_ms
                    start = take_together(self.env, busy_ms, self.host)
                    yield self.env.timeout(start + busy_ms - self.env.now)
                if effect.method == "persist_issued":
                    for request, decided in result.items():
                        if decided.code:
                            self.stored_ms.setdefault(request, self.env.now)
                return result
            if record is not None:
                record.redis_commands += (len(effect.commands)
                                          if isinstance(effect, Pipeline) else 1)
            yield self.env.timeout(network.exponential(latency.network_ms))
            return (yield from self.redis.serve(
                effect, back_ms=network.exponential(latency.network_ms)))

        return perform

    def will_look_at(self, at_ms: float) -> None:
        """Book a look at the store from outside the model (the sampler, the
        failover's copy) at ``at_ms``: effects run ahead of the clock
        (:class:`RedisServer`), but not past a booked look."""
        self.redis.will_look_at(at_ms)

    def watched(self) -> AbstractContextManager[None]:
        """Keep the store to the clock meanwhile, for a reader from outside the model
        who cannot book its look ahead."""
        return self.redis.watched()

    def look(self) -> None:
        """Bring the store to now, for a reader from outside the model at a moment it
        booked with :meth:`will_look_at`."""
        self.redis.look()

    def _execute_many(self, effects: list[Effect]) -> list[Any]:
        """``effects`` in order, each reply or error in its place: a run of commands and
        scripts as one pipeline, anything else (an atomic pipeline) on its own. An error
        goes to the flows it answers, as if each had been executed alone."""
        replies: list[Any] = []
        run: list[Command | Script] = []

        def send_run() -> None:
            nonlocal run
            if run:
                replies.extend(_or_error(partial(self.driver.execute_many, run), len(run)))
                run = []

        for effect in effects:
            if isinstance(effect, Command | Script):
                run.append(effect)
                continue
            send_run()
            replies.extend(_or_error(partial(self._execute_alone, effect), 1))
        send_run()
        return replies

    def _execute_alone(self, effect: Effect) -> list[Any]:
        return [self.driver.execute(effect)]

    def flow(self, flow: Flow[Any], record: RequestRecord | None = None
             ) -> Generator[simpy.Event, Any, Any]:
        """``flow`` run by the calling process (``yield from``), its effects performed as
        above: a process of its own would cost two more events a call."""
        return flow_process(self.env, flow, self.perform(record))


def _or_error(call: Callable[[], list[Any]], count: int) -> list[Any]:
    try:
        return call()
    except Exception as exc:
        return [exc] * count


def _service_ms(effect: Effect, command_ms: float, script_ms: float) -> float:
    """What ``effect`` holds Redis for. A script's call of a batch costs its requests'
    time as if each were a call of its own: an upper bound (the batch reads what its
    requests share once) that keeps the server's load what the requests bring."""
    match effect:
        case Script():
            return script_ms * max(1, effect.requests)
        case Pipeline(commands):
            return command_ms * len(commands)
        case Command():
            return command_ms
    return 0.0
