"""Waiting-room admission: every interval, a round lets the next users in through the
gateway and pushes the news to those it decided."""

from collections.abc import Generator
from typing import Any

import simpy

from couponsim.flows.gateway import admission_round
from couponsim.sim.records import START_MS
from couponsim.sim.world import World


class Admissions:
    def __init__(self, world: World) -> None:
        self.world = world
        self.env = world.env

    def start(self) -> None:
        self.env.process(self._admissions())

    def _admissions(self) -> Generator[simpy.Event, Any, None]:
        world = self.world
        gateway = world.run.gateway
        assert gateway is not None, "admissions run only behind a gateway"
        spec = world.scenario.gateway
        yield self.env.timeout(START_MS - self.env.now)
        while not world.traffic_done.triggered:
            yield self.env.timeout(spec.admission_interval_s * 1000)
            admission = yield from world.store.flow(admission_round(
                gateway, world.scenario.event.coupon_id, spec.admission_batch))
            if admission is None:
                continue
            world.run.admissions.append((self.env.now, sum(
                outcome != "REQUEUE" for outcome in admission.outcomes.values())))
            if admission.drained:            # users were waiting as the room closed
                world.room_news.close()
            else:
                world.room_news.tell(admission.outcomes)
