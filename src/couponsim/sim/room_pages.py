"""The waiting users' pages, asking the room every ``traffic.room_poll_ms``: a load on
the service's instances that grows with the room.

The service's page asks the room once a second while its user waits, and each ask
costs an instance its CPU (``service.room_poll_cpu_ms``, measured by the twin check:
about 1 ms, more than a press). A room of 500 waiting users is 500 asks a second; at
Story 2's size, tens of thousands. The crowd parks its waiting users without a process
(:mod:`couponsim.sim.room_news`), so the asks are charged as a flow rather than one by
one: every :data:`TICK_MS`, the asks the parked pages make in it, on each instance its
share (the servers are a pool: each charge goes to the first one free). The ask that
sees the news is charged by the crowd when it happens, as is a page's first ask; what
an ask's Redis read costs is not charged (a pipeline of reads, about a
twentieth of its CPU in the instance).
"""

from couponsim.sim.world import World

TICK_MS = 10.0
"""How often the asks of the parked pages are charged: a fraction of the instances'
time per press, so presses queue behind them about as they would behind single asks."""


class RoomPages:
    def __init__(self, world: World) -> None:
        self.world = world
        service, poll_ms = world.scenario.service, world.scenario.traffic.room_poll_ms
        self.share_ms = TICK_MS / poll_ms * service.room_poll_cpu_ms / service.instances
        """One page's asks in a tick, on one instance."""

    def start(self) -> None:
        self.world.env.process(self.world.every_tick(TICK_MS, self._ask))

    def _ask(self) -> None:
        world = self.world
        if pages := world.room_news.pages:
            for _ in range(world.scenario.service.instances):
                world.cpu_burst(pages * self.share_ms, world.instances)
