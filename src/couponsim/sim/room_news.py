"""The push a waiting-room user receives when the room has news for them.

The room publishes every outcome, so a waiting user sleeps on one event until
admission tells them, rather than polling on a timer of their own.
"""

from collections.abc import Collection

import simpy


class RoomNews:
    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._pending: dict[str, simpy.Event] = {}

    def of(self, user: str) -> simpy.Event:
        """The event ``user``'s next news triggers (the same for all their clicks)."""
        return self._pending.setdefault(user, self.env.event())

    def read(self, user: str, news: simpy.Event) -> None:
        """``user`` has read ``news``: their next wait is for the news after it."""
        if news.triggered and self._pending.get(user) is news:
            del self._pending[user]

    def tell(self, users: Collection[str] | None = None) -> None:
        """Push news to ``users`` who wait (None: to every waiting user)."""
        told = self._pending if users is None else {
            user: news for user, news in self._pending.items() if user in users}
        for news in list(told.values()):
            if not news.triggered:
                news.succeed()
