"""A failover (``[failover]``): the primary dies mid-sale and its replica, promoted,
holds the primary's store as it was the replication lag earlier."""

from collections.abc import Generator
from typing import Any

import fakeredis
import redis
import simpy

from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.flows import Variant
from couponsim.flows.issue import IssueOutcome
from couponsim.keys import seed_status_key
from couponsim.sim.records import START_MS, Failover
from couponsim.sim.world import World


class ReplicaFailover:
    def __init__(self, world: World) -> None:
        if not isinstance(world.store.driver.client, fakeredis.FakeRedis):
            raise InvalidInput(
                "failover.at_s: the simulated failover promotes an embedded replica "
                "(fakeredis) and cannot fork a real Redis; run it on fake://NAME, or "
                "kill a real master with couponsim.failover")
        self.world = world
        self.env = world.env

    def start(self) -> None:
        self.env.process(self._failover())

    def _failover(self) -> Generator[simpy.Event, Any, None]:
        """The primary dies at ``at_s``; its replica, ``lag`` behind, is promoted at once.

        Redis replicates a stream of writes in order, so at the death the replica
        holds exactly the primary's store as it was ``lag`` earlier: the model
        copies the store (DUMP of every key) at that moment and, at the death,
        restores the copy into a new store that every later effect runs on.
        Replaying each effect on a second store after its delay would be the
        literal picture, but not a faithful one: ``XADD *`` inside the scripts
        takes its ID from the store's own clock, so a replica replaying the
        scripts would mint other IDs and ignore the primary's XACKs (Redis 7
        replicates a script's effects, IDs included, precisely for this). A lag
        reaching back before the event opened is cut there: the sale's setup is
        taken as replicated long before. The switch itself is instant: what
        clients lose while a real failover is detected is not modelled, only
        what the store forgets.
        """
        world = self.world
        spec = world.scenario.failover
        dies_ms = START_MS + spec.at_s * 1000
        lag_ms = (float(world.rng["failover"].exponential(spec.replication_lag_ms))
                  if spec.lag_distribution == "exponential" else spec.replication_lag_ms)
        with world.store.watched():   # the copy's moment is known once the sale opens
            yield world.activated
            yield self.env.timeout(max(0.0, dies_ms - lag_ms - self.env.now))
            replicated_ms = self.env.now
            world.store.look()
            primary = world.store.driver.client
            assert isinstance(primary, fakeredis.FakeRedis), "checked when the part was made"
            copy = _dump(primary)
            world.store.will_look_at(dies_ms)
        yield self.env.timeout(max(0.0, dies_ms - self.env.now))
        world.store.look()                   # what the primary served before it died
        promoted = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        _restore(promoted, copy)
        world.store.driver = SyncDriver(promoted, "fake://promoted-replica",
                                        world.store.driver.repository)
        world.reclaiming = {f"consumer-{n}" for n in range(world.scenario.consumers.count)}
        acknowledged = [record.status_of or record.request for record in world.run.requests
                        if record.answer == IssueOutcome.ISSUED.value]
        records = [seed_status_key(request) if world.scenario.variant is Variant.SEED
                   else world.keys.request(request) for request in acknowledged]
        pipe = promoted.pipeline(transaction=False)
        for key in records:
            pipe.exists(key)
        kept = pipe.execute()
        world.run.failover = Failover(
            self.env.now, self.env.now - replicated_ms, len(acknowledged),
            tuple(request for request, exists in zip(acknowledged, kept, strict=True)
                  if not exists))


def _dump(client: redis.Redis) -> list[tuple[str, int, bytes]]:
    """Every key of the store with its time to live (ms, -1: none) and serialized value."""
    keys = list(client.scan_iter(count=1_000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
        pipe.dump(key)           # redis-py never decodes a DUMP reply
    replies = pipe.execute()
    return [(key, int(ttl), value) for key, ttl, value
            in zip(keys, replies[0::2], replies[1::2], strict=True) if value is not None]


def _restore(client: redis.Redis, copy: list[tuple[str, int, bytes]]) -> None:
    pipe = client.pipeline(transaction=False)
    for key, ttl, value in copy:
        pipe.restore(key, max(ttl, 0), value)
    pipe.execute()
