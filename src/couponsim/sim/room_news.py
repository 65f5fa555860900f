"""The push a waiting-room user receives when the room has news for them, and the read
that tells them what it is.

The room publishes every outcome, so a waiting user sleeps on one event until
admission tells them, rather than polling on a timer of their own. The users one
round tells read their outcomes together: their pages ask at the same moment, and the
service sends the concurrent reads as one call of the batched script
(``room_outcome_batch``), as its driver coalesces the requests of one loop turn. A
closing room tells everyone at once; read one by one, that burst held a flow, its
effect and its events for each of a crowd's users at the same moment (#17: most of
Story 2's peak memory).
"""

from collections.abc import Collection, Generator
from typing import Any

import simpy

from couponsim.flows.waiting_room import room_outcome_batch
from couponsim.sim.store import Store

READ_BATCH = 1_000
"""Users whose outcomes one call reads at most: the reads of a larger burst go as
several calls, queued at Redis one after the other as the service would send them."""

Outcomes = dict[str, tuple[str | None, str | None]]
"""Each told user's state in the room and the request the room issued with."""


class RoomNews:
    def __init__(self, env: simpy.Environment, store: Store, coupon_id: str) -> None:
        self.env = env
        self.store = store
        self.coupon_id = coupon_id
        self._pending: dict[str, simpy.Event] = {}

    def of(self, user: str) -> simpy.Event:
        """The event ``user``'s next news triggers (the same for all their clicks). Its
        value is the read that tells them their outcome (a process returning
        :data:`Outcomes`), or None when the user left and must read their own."""
        return self._pending.setdefault(user, self.env.event())

    def read(self, user: str, news: simpy.Event) -> None:
        """``user`` has read ``news``: their next wait is for the news after it."""
        if news.triggered and self._pending.get(user) is news:
            del self._pending[user]

    def tell(self, users: Collection[str] | None = None) -> None:
        """Push news to ``users`` who wait (None: to every waiting user), each batch of
        them with the one read that tells them their outcomes."""
        told = [(user, news) for user, news in self._pending.items()
                if not news.triggered and (users is None or user in users)]
        for first in range(0, len(told), READ_BATCH):
            batch = told[first:first + READ_BATCH]
            reading = self.env.process(self._read([user for user, _news in batch]))
            for _user, news in batch:
                news.succeed(reading)

    def _read(self, users: list[str]) -> Generator[simpy.Event, Any, Outcomes]:
        outcomes = yield from self.store.flow(room_outcome_batch(self.coupon_id, users))
        return dict(zip(users, outcomes, strict=True))
