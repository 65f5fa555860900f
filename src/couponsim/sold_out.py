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
"""

from collections import Counter


class SoldOutFlags:
    def __init__(self) -> None:
        self._flagged: set[str] = set()
        self._returns: Counter[str] = Counter()
        self._resets = 0

    def __contains__(self, coupon_id: object) -> bool:
        return coupon_id in self._flagged

    def epoch(self, coupon_id: str) -> int:
        """Changes whenever this coupon's flag could have been cleared."""
        return self._returns[coupon_id] + self._resets

    def saw_sold_out(self, coupon_id: str, epoch: int) -> None:
        """Redis answered SOLD_OUT to a call made at ``epoch``."""
        if self.epoch(coupon_id) == epoch:
            self._flagged.add(coupon_id)

    def stock_returned(self, coupon_id: str) -> None:
        self._flagged.discard(coupon_id)
        self._returns[coupon_id] += 1

    def forget_all(self) -> None:
        self._flagged.clear()
        self._resets += 1
