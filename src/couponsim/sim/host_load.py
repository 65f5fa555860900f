"""The load on the host from processes outside the model: the twin check's load
generator, Redis's own CPU. They keep ``host.background_cores`` of its cores busy; the
model takes that share in a burst every :data:`TICK_MS`, so the model's processes find
a core busy about as often as they do live."""

from couponsim.sim.world import World

TICK_MS = 1.0
"""Shorter than a press's CPU: the bursts interleave with the model's own work."""


class HostLoad:
    def __init__(self, world: World) -> None:
        self.world = world
        self.burst_ms = world.scenario.host.background_cores * TICK_MS

    def start(self) -> None:
        self.world.env.process(self.world.every_tick(TICK_MS, self._load))

    def _load(self) -> None:
        self.world.cpu_burst(self.burst_ms)
