"""The SimPy model of one flash sale, run through the real flows and scripts.

The model is made of parts over one :class:`World` (one clock, the seed's random
streams, the store, the run's records), the way SimPy's own resources are small
classes over one environment: the scheduler, the crowd and its checkouts, the
consumers, the waiting room's admissions and its users' pages, the sampler, the load of
processes outside the model on a shared host, and, when the scenario has one, the
failover. This module is the one place that wires them: a new part is a
class with a ``start()`` that starts its processes, made and listed in
:meth:`Model.parts`. The order of that list is the order their processes start,
which a seed's replay depends on.
"""

from collections.abc import Callable
from typing import Protocol

from couponsim.drivers.sync import SyncDriver
from couponsim.sim.admissions import Admissions
from couponsim.sim.checkouts import Checkouts
from couponsim.sim.consumers import Consumers
from couponsim.sim.crowd import Crowd
from couponsim.sim.host_load import HostLoad
from couponsim.sim.records import Run
from couponsim.sim.replica import ReplicaFailover
from couponsim.sim.room_pages import RoomPages
from couponsim.sim.sampler import Sampler
from couponsim.sim.scenario import Scenario
from couponsim.sim.scheduler import Scheduler
from couponsim.sim.world import World


class Part(Protocol):
    def start(self) -> None:
        """Start this part's processes in the world's environment."""


class Model:
    def __init__(self, scenario: Scenario, driver: SyncDriver,
                 progress: Callable[[int], None] | None = None) -> None:
        self.world = World(scenario, driver)
        self.consumers = Consumers(self.world)
        self.parts: list[Part] = [
            Scheduler(self.world),
            Crowd(self.world, Checkouts(self.world), progress),
            self.consumers,
        ]
        if self.world.run.gateway is not None:
            self.parts.append(Admissions(self.world))
        if self.world.room_asks_charged:
            self.parts.append(RoomPages(self.world))
        if self.world.host is not None and scenario.host.background_cores:
            self.parts.append(HostLoad(self.world))
        self.parts.append(Sampler(self.world, self.consumers))
        if scenario.failover.at_s >= 0:
            self.parts.append(ReplicaFailover(self.world))

    @property
    def driver(self) -> SyncDriver:
        """The store the run ended on: after a failover, the promoted replica's."""
        return self.world.store.driver

    def simulate(self) -> Run:
        for part in self.parts:
            part.start()
        self.world.env.run()
        self.world.run.end_ms = self.world.env.now
        return self.world.run
