"""The consumers: each drains the queue into the database in batches from the
opening of the sale until the traffic is done and the queue is empty."""

from collections.abc import Generator
from typing import Any

import simpy

from couponsim.event import CouponEvent
from couponsim.flows import Variant
from couponsim.flows.consume import (
    SEED_BATCH_SIZE,
    ConsumerConfig,
    consume_batch,
    consume_seed_batch,
    load_event,
)
from couponsim.sim.records import START_MS
from couponsim.sim.world import World


class Consumers:
    def __init__(self, world: World) -> None:
        self.world = world
        self.env = world.env
        self.done: simpy.Event = self.env.event()
        """Every consumer has stopped (made a condition on them by :meth:`start`)."""

    def start(self) -> None:
        self.done = self.env.all_of([
            self.env.process(self._consumer(f"consumer-{n}"))
            for n in range(self.world.scenario.consumers.count)])

    def _consumer(self, name: str) -> Generator[simpy.Event, Any, None]:
        world = self.world
        yield self.env.timeout(START_MS - self.env.now)
        spec = world.scenario.consumers
        events: dict[str, CouponEvent] = {}
        event = None if world.scenario.variant is Variant.SEED else (
            yield from world.store.flow(load_event(world.scenario.event.coupon_id)))
        config = ConsumerConfig(batch_size=spec.batch_size)
        # Pending entries are reclaimed after an idle time Redis measures in wall time,
        # which virtual time never reaches; a consumer whose store failed over reclaims
        # at once instead, as one restarted on the promoted replica would.
        reclaim = ConsumerConfig(batch_size=spec.batch_size, claim_idle_ms=0)
        while True:
            reclaiming = name in world.reclaiming
            flow = (consume_seed_batch(events, int(self.env.now), SEED_BATCH_SIZE,
                                       options=world.scenario.seed_options)
                    if event is None else consume_batch(event, name, int(self.env.now),
                                                        reclaim if reclaiming else config))
            report = yield from world.store.flow(flow)
            if report.read and (cpu_ms := self._cpu_ms(report.read)):
                # the worker's own time, between calls (on a host, when a core is free)
                yield self.env.timeout(world.cpu_burst(cpu_ms) + cpu_ms - self.env.now)
            if reclaiming and not report.reclaimed:
                world.reclaiming.discard(name)
            if event is None and report.read:
                yield self.env.timeout(spec.poll_ms)   # the seed's fixedDelay: after every run
            if report.read == 0:
                if world.traffic_done.triggered:
                    return
                yield self.env.timeout(spec.poll_ms)

    def _cpu_ms(self, entries: int) -> float:
        latency = self.world.scenario.latency
        return latency.consumer_batch_cpu_ms + entries * latency.consumer_row_cpu_ms
