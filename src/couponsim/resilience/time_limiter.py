"""A time limiter: a call that outlives its budget is answered by the fallback.

In the sans-IO flows a call cannot be cut short from outside, so the limiter
judges the elapsed time when the call returns: the late answer is dropped and
the fallback answers. (A driver that could stop waiting at the deadline, as
resilience4j cancels the future, would answer sooner; the outcome is the
same.) Since the call itself may have taken effect, the fallback carries the
same request id, which the idempotent issue script then answers consistently.
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
