"""What every part of the model shares: one clock, the seed's random streams, the
store, the run's records, and the signals the parts give each other.

Each purpose draws from its own random stream of one seed (numpy SeedSequence), so a
run replays bit for bit, and a part added later takes a stream of its own without
changing the draws of the others.
"""

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from couponsim.drivers.sync import SyncDriver
from couponsim.flows.gateway import Gateway
from couponsim.keys import CouponKeys
from couponsim.resilience.breaker import BreakerConfig, CircuitBreaker
from couponsim.resilience.rate_limiter import RateLimiter, RateLimiterConfig
from couponsim.resilience.time_limiter import TimeLimiter
from couponsim.sim.components import FifoServers, take_together
from couponsim.sim.records import START_MS, Run
from couponsim.sim.room_news import RoomNews
from couponsim.sim.scenario import Scenario
from couponsim.sim.store import Store
from couponsim.sim.traffic import EARLY_WINDOW_MS

STREAMS = ("arrivals", "clicks", "network", "shuffle", "behaviour", "checkout", "failover",
           "news")
"""One random stream per purpose; new purposes go at the end, so the streams of the
old ones (and the runs they gave) stay as they were."""


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """A fresh generator for each purpose of :data:`STREAMS`, from one seed."""
    streams = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, streams, strict=True)}


class World:
    def __init__(self, scenario: Scenario, driver: SyncDriver) -> None:
        self.scenario = scenario
        self.rng = random_streams(scenario.seed)
        warm_up_ms = START_MS + scenario.event.warm_up_at_s * 1000
        self.env = simpy.Environment(initial_time=warm_up_ms - 1)
        self.host = FifoServers(self.env, scenario.host.cores) if scenario.host.cores else None
        """The cores the processes share (None: each has its own)."""
        self.store = Store(self.env, scenario.latency, driver, self.rng["network"], self.host)
        self.keys = CouponKeys(scenario.event.coupon_id)
        self.run = Run(scenario, gateway=gateway(scenario), stored_ms=self.store.stored_ms)
        self.room_news = RoomNews(self.env, self.store, scenario.event.coupon_id,
                                  self.rng["news"])
        self.instances = (FifoServers(self.env, scenario.service.instances)
                          if scenario.service.instances else None)
        """The service's instances, each running one request's CPU at a time (None: not
        modelled)."""
        self.traffic_done = self.env.event()
        """Every click has its final answer: the jobs that serve the crowd may stop."""
        self.activated = self.env.event()
        self.reclaiming: set[str] = set()
        """Consumers to reclaim every pending entry at once: after a failover, the
        promoted store has entries pending that the dead primary had acknowledged."""

    @property
    def room_asks_charged(self) -> bool:
        """Do the waiting users' pages ask the room, at a CPU cost on the instances?"""
        traffic, service = self.scenario.traffic, self.scenario.service
        return self.instances is not None and bool(traffic.room_poll_ms
                                                   and service.room_poll_cpu_ms)

    def room_asked(self) -> None:
        """One page asked the room: an instance's CPU, which presses then queue behind
        (the page waits for nothing here: it learns by the room's news)."""
        if self.room_asks_charged:
            self.cpu_burst(self.scenario.service.room_poll_cpu_ms, self.instances)

    def cpu_burst(self, service_ms: float, process: FifoServers | None = None) -> float:
        """When a burst of CPU arriving now starts: on its process's own servers (the
        instances; None: a process that runs one thing at a time anyway, a consumer) and,
        on a host, on one of its cores."""
        return take_together(self.env, service_ms, process, self.host)

    def every_tick(self, tick_ms: float, act: Callable[[], None]
                   ) -> Generator[simpy.Event, Any, None]:
        """``act`` every ``tick_ms``, from the first press there can be (an early one)
        until every click has its answer: the loads charged as a flow."""
        yield self.env.timeout(max(0.0, START_MS - EARLY_WINDOW_MS - self.env.now))
        while not self.traffic_done.triggered:
            act()
            yield self.env.timeout(tick_ms)


def gateway(scenario: Scenario) -> Gateway | None:
    """The gateway of the scenario's service, or None when it has none."""
    spec = scenario.gateway
    if not spec.enabled:
        return None
    return Gateway(
        breaker=CircuitBreaker(BreakerConfig(
            window_size=spec.breaker_window, minimum_calls=spec.breaker_minimum_calls,
            failure_rate_threshold=spec.breaker_failure_rate,
            wait_in_open_s=spec.breaker_wait_s,
            permitted_in_half_open=spec.breaker_half_open_calls)),
        limiter=RateLimiter(RateLimiterConfig(
            limit_for_period=spec.rate_limit_per_s, refresh_period_s=1.0,
            timeout_s=spec.rate_limit_timeout_ms / 1000), created_at=START_MS / 1000),
        time_limiter=TimeLimiter(spec.time_limit_ms / 1000),
        variant=scenario.variant)
