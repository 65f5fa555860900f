"""A time limiter: a call that outlives its budget is answered by the fallback.

In the sans-IO flows a call cannot be cut short from outside, so the limiter
judges the elapsed time when the call returns (asyncio and SimPy drivers can
also stop waiting at the deadline). Either way the late answer is dropped and
the fallback answers; since the call itself may still have taken effect, the
fallback must carry the same request id, which the idempotent issue script
then answers consistently.
"""

from dataclasses import dataclass

from couponsim.errors import InvalidInput


@dataclass(frozen=True)
class TimeLimiter:
    timeout_s: float = 1.0
    """resilience4j's default budget."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise InvalidInput("timeout_s must be above 0")

    def timed_out(self, started: float, finished: float) -> bool:
        return finished - started > self.timeout_s
