"""The load on the host from processes outside the model: the twin check's load
generator, Redis's own CPU. They keep ``host.background_cores`` of its cores busy; the
model takes that share in a burst every :data:`TICK_MS`, so the model's processes find
a core busy about as often as they do live."""

from collections.abc import Generator
from typing import Any

import simpy

from couponsim.sim.records import START_MS
from couponsim.sim.traffic import EARLY_WINDOW_MS
from couponsim.sim.world import World

TICK_MS = 1.0
"""Shorter than a press's CPU: the bursts interleave with the model's own work."""


class HostLoad:
    def __init__(self, world: World) -> None:
        self.world = world
        self.env = world.env

    def start(self) -> None:
        self.env.process(self._load())

    def _load(self) -> Generator[simpy.Event, Any, None]:
        world = self.world
        burst_ms = world.scenario.host.background_cores * TICK_MS
        yield self.env.timeout(max(0.0, START_MS - EARLY_WINDOW_MS - self.env.now))
        while not world.traffic_done.triggered:      # from the first possible press
            world.cpu_burst(burst_ms)
            yield self.env.timeout(TICK_MS)
