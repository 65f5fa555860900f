"""A rate limiter with resilience4j's (AtomicRateLimiter) semantics.

Time is cut into cycles of ``refresh_period_s`` counted from the limiter's
creation; each cycle refills the permits up to ``limit_for_period``. A
caller who cannot be served now but can be within ``timeout_s`` reserves
permits ahead (the count goes negative) and is told how long to wait; one
who cannot is refused and reserves nothing.
"""

import math
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
        if not 1 <= permits <= self.config.limit_for_period:
            raise InvalidInput(f"permits must be 1 to {self.config.limit_for_period}")
        period, limit = self.config.refresh_period_s, self.config.limit_for_period
        cycle = math.floor((now - self.created_at) / period)
        if cycle > self._cycle:
            accumulated = (cycle - self._cycle) * limit
            self._permissions = min(self._permissions + accumulated, limit)
            self._cycle = cycle
        wait = 0.0
        if self._permissions < permits:
            missing = permits - self._permissions
            cycles_needed = math.ceil(missing / limit)
            next_cycle_at = self.created_at + (cycle + 1) * period
            wait = (next_cycle_at - now) + (cycles_needed - 1) * period
        if wait > self.config.timeout_s:
            self.refused += 1
            return Permit(False)
        self._permissions -= permits
        self.granted += 1
        return Permit(True, wait)

    def available(self, now: float) -> int:
        """Permits left in the current cycle (negative when reserved ahead)."""
        cycle = math.floor((now - self.created_at) / self.config.refresh_period_s)
        if cycle > self._cycle:
            return min(self._permissions + (cycle - self._cycle) * self.config.limit_for_period,
                       self.config.limit_for_period)
        return self._permissions
