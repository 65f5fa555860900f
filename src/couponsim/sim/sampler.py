"""The sampler: observes the store from outside the model (no queueing, no latency)
every ``SAMPLE_MS``, for the timeline."""

from collections.abc import Generator
from typing import Any

import simpy

from couponsim.flows import Variant
from couponsim.keys import SEED_ISSUE_QUEUE
from couponsim.sim.consumers import Consumers
from couponsim.sim.records import START_MS, Sample
from couponsim.sim.world import World

SAMPLE_MS = 100.0


class Sampler:
    def __init__(self, world: World, consumers: Consumers) -> None:
        self.world = world
        self.env = world.env
        self.consumers = consumers

    def start(self) -> None:
        self.world.store.will_look_at(START_MS - 1_000)
        self.env.process(self._sample())

    def _sample(self) -> Generator[simpy.Event, Any, None]:
        world, keys = self.world, self.world.keys
        yield self.env.timeout(START_MS - 1_000 - self.env.now)
        while True:
            world.store.look()
            client = world.store.driver.client      # the promoted store after a failover
            if world.scenario.variant is Variant.SEED:
                backlog = client.llen(SEED_ISSUE_QUEUE)
            else:
                group = client.xinfo_groups(keys.queue)[0]
                backlog = int(group.get("lag") or 0) + int(group["pending"])
            breaker = world.run.gateway.breaker.state.value if world.run.gateway else ""
            world.run.samples.append(Sample(self.env.now, int(client.get(keys.stock) or 0),
                                            backlog, client.zcard(keys.waiting), breaker))
            # Done when the queue is drained, or when the consumers have stopped with
            # entries left that no one will read (a store that forgot its group's state
            # after a failover): the checker reports those; sampling on would never end.
            if world.traffic_done.triggered and (backlog == 0 or self.consumers.done.triggered):
                return
            world.store.will_look_at(self.env.now + SAMPLE_MS)
            yield self.env.timeout(SAMPLE_MS)
