"""The scheduler: warms the event up (at least 1 s before the start), then activates
it at the start of the sale."""

from collections.abc import Generator
from typing import Any

import simpy

from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.sim.records import START_MS
from couponsim.sim.world import World


class Scheduler:
    def __init__(self, world: World) -> None:
        self.world = world
        self.env = world.env

    def start(self) -> None:
        spec = self.world.scenario
        event = CouponEvent(spec.event.coupon_id, stock=spec.event.stock, name=spec.name,
                            discount_value=spec.event.discount_value, starts_at_ms=START_MS)
        self.env.process(self._schedule(event))

    def _schedule(self, event: CouponEvent) -> Generator[simpy.Event, Any, None]:
        seed = self.world.scenario.variant is Variant.SEED
        store = self.world.store
        yield from store.flow(lifecycle.warm_up_seed(event) if seed else lifecycle.warm_up(event))
        yield self.env.timeout(START_MS - self.env.now)
        yield from store.flow(lifecycle.activate_seed(event.coupon_id) if seed
                              else lifecycle.activate(event.coupon_id))
        self.world.activated.succeed()
