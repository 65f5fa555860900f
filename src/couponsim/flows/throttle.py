"""A rate limit shared by every service instance, kept in Redis (lua/gcra.lua).

The in-process :class:`~couponsim.resilience.rate_limiter.RateLimiter` counts
one instance's calls; behind a load balancer each instance would let its own
budget through. This one counts them all.
"""

from dataclasses import dataclass

from couponsim.effects import Script
from couponsim.errors import InvalidInput
from couponsim.flows import Flow
from couponsim.ids import validate_ms
from couponsim.keys import rate_limit_key


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
    validate_ms("now_ms", now_ms)
    allowed, retry_after = yield Script(
        "gcra", (rate_limit_key(limit.name),),
        (now_ms, limit.period_ms / limit.limit, limit.limit))
    return Verdict(bool(allowed), int(retry_after))
