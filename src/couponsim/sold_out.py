"""What one service instance knows to be sold out, so that once the stock is gone the
crowd pressing on costs no Redis round trip.

Stock can come back: a compensation gives its unit back (``compensate.lua``, the
only script that does) and announces the request's FAILED status on the coupon's
channel. A flag is therefore only as good as the news that clears it: the
service's status hub, subscribed to every status channel, calls
:meth:`stock_returned` on each FAILED update and :meth:`forget_all` when it lost
its subscription for a while (whatever was published meanwhile is gone).

A SOLD_OUT answer and a return of stock can cross: the issue script answers
SOLD_OUT, a unit comes back, the hub hears of it, and only then does the
answer reach the caller. :meth:`epoch` closes that gap: the caller reads it
before asking Redis, and :meth:`saw_sold_out` raises the flag only if no
return was heard since.

News can also fail to come at all (a pub/sub socket dead without an error,
stock put back by hand), so a flag lasts ``max_age_s`` at most: then one
request asks Redis again and raises it anew. A second of the crowd costs one
round trip, not one per user.
"""

import time
from collections import Counter
from collections.abc import Callable

MAX_AGE_S = 1.0


class SoldOutFlags:
    """The coupons flagged sold out, each with the time it was flagged."""

    def __init__(self, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._flagged: dict[str, float] = {}
        self._returns: Counter[str] = Counter()
        self._resets = 0
        self._max_age_s = max_age_s
        self._clock = clock

    def __contains__(self, coupon_id: object) -> bool:
        flagged_at = self._flagged.get(coupon_id) if isinstance(coupon_id, str) else None
        return flagged_at is not None and self._clock() - flagged_at < self._max_age_s

    def epoch(self, coupon_id: str) -> int:
        """Changes whenever this coupon's flag could have been cleared."""
        return self._returns[coupon_id] + self._resets

    def saw_sold_out(self, coupon_id: str, epoch: int) -> None:
        """Redis answered SOLD_OUT to a call made at ``epoch``."""
        if self.epoch(coupon_id) == epoch:
            self._flagged[coupon_id] = self._clock()

    def stock_returned(self, coupon_id: str) -> None:
        """A unit of the coupon came back (a compensation was announced)."""
        self._flagged.pop(coupon_id, None)
        self._returns[coupon_id] += 1

    def forget_all(self) -> None:
        """News may have been missed (the hub lost its subscription): trust no flag."""
        self._flagged.clear()
        self._resets += 1
