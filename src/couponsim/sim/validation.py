"""Checking the model against queueing theory before trusting its numbers.

Poisson arrivals of one-command requests go through the model's own Redis
component (:class:`~couponsim.sim.components.RedisServer`) and the SimPy driver,
against fakeredis; the mean wait in queue of several independent replications
gives a 95% confidence interval, which must hold the closed-form value.
"""

from collections.abc import Generator
from statistics import fmean
from typing import Any, cast

import fakeredis
import numpy as np
import simpy

from couponsim.confidence import Interval, confidence_interval
from couponsim.drivers.simulated import flow_process
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Command, Effect
from couponsim.flows import Flow
from couponsim.sim.components import RedisServer


def _ping() -> Flow[Any]:
    return (yield Command("PING"))


def queue_wait(arrival_rate_per_ms: float, service_ms: float, servers: int, requests: int,
               seed: int, exponential_service: bool = True) -> float:
    """One replication: mean wait in queue (ms) after a 10% warm-up is dropped."""
    rng = np.random.default_rng(seed)
    driver = SyncDriver(fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                            decode_responses=True), "fake://validation")
    env = simpy.Environment()

    def service(_effect: Effect) -> float:
        return float(rng.exponential(service_ms)) if exponential_service else service_ms

    redis = RedisServer(env, lambda pings: driver.execute_many(cast(list[Command], pings)),
                        service, servers)

    def source() -> Generator[simpy.Event, Any, None]:
        for _ in range(requests):
            yield env.timeout(float(rng.exponential(1 / arrival_rate_per_ms)))
            env.process(flow_process(env, _ping(), redis.serve))

    env.process(source())
    env.run()
    return fmean(redis.waits_ms[requests // 10:])


def replicate(arrival_rate_per_ms: float, service_ms: float, servers: int = 1,
              requests: int = 4_000, replications: int = 10, seed: int = 1,
              exponential_service: bool = True) -> Interval:
    """The 95% interval of the mean wait in queue over independent replications."""
    seeds = np.random.SeedSequence(seed).generate_state(replications)
    return confidence_interval([
        queue_wait(arrival_rate_per_ms, service_ms, servers, requests, int(s),
                   exponential_service) for s in seeds])
