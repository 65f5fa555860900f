"""A rate limiter with resilience4j's (AtomicRateLimiter) semantics.

Time is cut into cycles of ``refresh_period_s`` counted from the limiter's
creation; each cycle refills the permits up to ``limit_for_period``. A
caller who cannot be served now but can be within ``timeout_s`` reserves
permits ahead (the count goes negative) and is told how long to wait; one
who cannot is refused and reserves nothing.
"""

from dataclasses import dataclass, field

from couponsim.errors import InvalidInput


@dataclass(frozen=True)
class RateLimiterConfig:
    limit_for_period: int = 50
    refresh_period_s: float = 500e-9
    """resilience4j's default is 500 ns; a gateway sets what it means."""
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.limit_for_period < 1 or self.refresh_period_s <= 0 or self.timeout_s < 0:
            raise InvalidInput("limit_for_period >= 1, refresh_period_s > 0 and timeout_s >= 0")


@dataclass(frozen=True)
class Permit:
    granted: bool
    wait_s: float = 0.0
    """How long the caller must wait before using a granted permit."""


@dataclass
class RateLimiter:
    config: RateLimiterConfig
    created_at: float = 0.0
    granted: int = 0
    refused: int = 0
    _cycle: int = field(default=0, init=False)
    _permissions: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._permissions = self.config.limit_for_period

    def acquire(self, now: float, permits: int = 1) -> Permit:
        """Take ``permits`` now, or reserve them ahead and wait, or be refused.

        More permits than one cycle holds are served over several cycles, as
        resilience4j does. Time is counted in whole nanoseconds, as there, so
        that 0.3 s is the start of the fourth 0.1 s cycle and not the end of the third.
        """
        if permits < 1:
            raise InvalidInput("permits must be at least 1")
        limit, elapsed, period = self.config.limit_for_period, self._ns(now), self._period_ns()
        cycle = elapsed // period
        self._permissions = self._refilled(cycle)
        self._cycle = max(self._cycle, cycle)
        wait_ns = 0
        if self._permissions < permits:
            cycles_needed = -(-(permits - self._permissions) // limit)
            wait_ns = (cycle + 1) * period - elapsed + (cycles_needed - 1) * period
        if wait_ns > round(self.config.timeout_s * 1e9):
            self.refused += 1
            return Permit(False)
        self._permissions -= permits
        self.granted += 1
        return Permit(True, wait_ns / 1e9)

    def available(self, now: float) -> int:
        """Permits left in the current cycle (negative when reserved ahead)."""
        return self._refilled(self._ns(now) // self._period_ns())

    def _refilled(self, cycle: int) -> int:
        if cycle <= self._cycle:
            return self._permissions
        limit = self.config.limit_for_period
        return min(self._permissions + (cycle - self._cycle) * limit, limit)

    def _ns(self, now: float) -> int:
        return round((now - self.created_at) * 1e9)

    def _period_ns(self) -> int:
        return max(1, round(self.config.refresh_period_s * 1e9))
