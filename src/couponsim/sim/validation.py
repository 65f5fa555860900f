"""Checking the model against queueing theory before trusting its numbers.

Poisson arrivals of one-command requests go through the model's own Redis
component (:class:`~couponsim.sim.components.RedisServer`) and the SimPy driver,
against fakeredis; the mean wait in queue of several independent replications
gives a 95% confidence interval, which must hold the closed-form value.
"""

from collections.abc import Generator
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev
from typing import Any

import fakeredis
import numpy as np
import simpy

from couponsim.drivers.simulated import flow_process
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Command, Effect
from couponsim.errors import InvalidInput
from couponsim.flows import Flow
from couponsim.sim.components import RedisServer

# Student's t, 97.5th percentile, by degrees of freedom: the two-sided 95% interval.
_T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
          9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
          16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def confidence_interval(samples: list[float]) -> Interval:
    """The 95% t interval of the mean of independent replications."""
    if len(samples) < 2:
        raise InvalidInput("a confidence interval needs at least two replications")
    df = len(samples) - 1
    # Between tabled values the lower df is used: a slightly wider, safe interval.
    t = (_T_975[max(k for k in _T_975 if k <= df)] if df <= max(_T_975)
         else NormalDist().inv_cdf(0.975))
    mean, half = fmean(samples), t * stdev(samples) / len(samples) ** 0.5
    return Interval(mean, mean - half, mean + half)


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

    redis = RedisServer(env, driver.execute, service, servers)

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
