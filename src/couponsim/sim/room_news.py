"""The push a waiting-room user receives when the room has news for them, and the read
that tells them what it is.

The room publishes every outcome, so a waiting user is parked until admission tells
them (no process, no timer of their own but their patience), rather than polling. The
users one round tells read their outcomes together: their pages ask at the same
moment, and the service sends the concurrent reads as one call of the batched script
(``room_outcome_batch``), as its driver coalesces the requests of one loop turn. A
closing room tells everyone at once; read one by one, that burst held a flow, its
effect and its events for each of a crowd's users at the same moment (#17: most of
Story 2's peak memory).
"""

from collections.abc import Collection, Generator
from typing import Any, Protocol

import numpy as np
import simpy

from couponsim.flows.waiting_room import room_outcome_batch
from couponsim.sim.store import Store

READ_BATCH = 1_000
"""Users whose outcomes one call reads at most: the reads of a larger burst go as
several calls, queued at Redis one after the other as the service would send them."""

Outcomes = dict[str, tuple[str | None, str | None]]
"""Each told user's state in the room and the request the room issued with."""


class Waiting(Protocol):
    """A click parked in the room until its news (:class:`couponsim.sim.crowd.Waiter`)."""

    @property
    def user(self) -> str: ...

    def told(self, reading: simpy.Process | None) -> None:
        """The news: ``reading`` will tell the outcome (None: read your own)."""


class RoomNews:
    def __init__(self, env: simpy.Environment, store: Store, coupon_id: str,
                 order: np.random.Generator) -> None:
        self.env = env
        self.store = store
        self.coupon_id = coupon_id
        self.order = order
        """Draws the order the told clicks' reads reach Redis in: each page's read
        crosses the network on its own, so the first to wait is not the first read."""
        self._waiting: dict[str, list[Waiting]] = {}
        self.pages = 0
        """Clicks parked now: each a page that asks the room while its user waits."""
        self.closed = False
        """The room has closed (:meth:`close`): it has no more news to wait for."""

    def wait(self, waiter: Waiting) -> None:
        """Park ``waiter`` until the room's next news for its user. In a closed room
        the news is already there: one who joined as it closed (their answer still on
        its way) reads their state at once, as the room's page does on opening."""
        if self.closed:
            waiter.told(None)
            return
        self._waiting.setdefault(waiter.user, []).append(waiter)
        self.pages += 1

    def stop_waiting(self, waiter: Waiting) -> None:
        """``waiter`` waits no more (its patience ran out)."""
        waiters = self._waiting.get(waiter.user, [])
        if waiter in waiters:
            waiters.remove(waiter)
            self.pages -= 1
        if not waiters:
            self._waiting.pop(waiter.user, None)

    def tell(self, users: Collection[str]) -> None:
        """Push news to ``users`` who wait, each batch of them with the one read that
        tells them their outcomes."""
        self._tell({user: self._waiting.pop(user) for user in users if user in self._waiting})

    def close(self) -> None:
        """The room closed: every waiting user has news, and so will anyone who comes to
        wait later (:meth:`wait`)."""
        self.closed = True
        told, self._waiting = self._waiting, {}
        self._tell(told)

    def _tell(self, told: dict[str, list[Waiting]]) -> None:
        """Each told click reads, in batches: a sample of the burst each, not a block of
        those who came to wait together."""
        waiters = [waiter for user_waiters in told.values() for waiter in user_waiters]
        self.pages -= len(waiters)
        self.order.shuffle(waiters)
        for first in range(0, len(waiters), READ_BATCH):
            batch = waiters[first:first + READ_BATCH]
            reading = self.env.process(self._read([waiter.user for waiter in batch]))
            for waiter in batch:
                waiter.told(reading)

    def leave(self, user: str) -> None:
        """``user`` left the room: their other clicks still waiting learn it by a read
        of their own."""
        waiters = self._waiting.pop(user, [])
        self.pages -= len(waiters)
        for waiter in waiters:
            waiter.told(None)

    def _read(self, users: list[str]) -> Generator[simpy.Event, Any, Outcomes]:
        outcomes = yield from self.store.flow(room_outcome_batch(self.coupon_id, users))
        return dict(zip(users, outcomes, strict=True))
