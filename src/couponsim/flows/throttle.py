"""A rate limit shared by every service instance, kept in Redis (lua/gcra.lua).

The in-process :class:`~couponsim.resilience.rate_limiter.RateLimiter` counts
one instance's calls; behind a load balancer each instance would let its own
budget through. This one counts them all.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from couponsim.effects import BatchShape, Script
from couponsim.errors import InvalidInput
from couponsim.flows import Flow
from couponsim.ids import validate_ms
from couponsim.keys import rate_limit_key

GCRA_SHAPE = BatchShape(shared_keys=1, shared_args=2, keys_each=0, args_each=1, reply_each=2)
"""lua/gcra.lua's layout: the limit's key, its interval and burst, then each request's time."""


@dataclass(frozen=True)
class SharedLimit:
    name: str
    limit: int
    """Requests per period, and the burst allowed at once."""
    period_ms: int

    def __post_init__(self) -> None:
        rate_limit_key(self.name)
        if self.limit < 1 or self.period_ms < 1:
            raise InvalidInput("a shared limit needs limit >= 1 and period_ms >= 1")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_ms: int = 0


def acquire_shared(limit: SharedLimit, now_ms: int) -> Flow[Verdict]:
    (verdict,) = yield from acquire_shared_batch(limit, [now_ms])
    return verdict


def acquire_shared_batch(limit: SharedLimit, times_ms: Sequence[int]) -> Flow[list[Verdict]]:
    """Many requests against ``limit`` in one script call, decided in their order exactly
    as one call each would decide them; one verdict per request, in order."""
    if not times_ms:
        return []
    for now_ms in times_ms:
        validate_ms("now_ms", now_ms)
    replies = yield Script("gcra", (rate_limit_key(limit.name),),
                           (limit.period_ms / limit.limit, limit.limit, *times_ms),
                           GCRA_SHAPE)
    return [Verdict(bool(replies[2 * n]), int(replies[2 * n + 1]))
            for n in range(len(times_ms))]
