"""A circuit breaker with resilience4j's semantics.

CLOSED records outcomes in a sliding window (the last N calls, or the last N
seconds in one-second buckets). Once at least ``minimum_calls`` are recorded,
a failure rate or slow-call rate at or above its threshold opens the breaker
(a call is slow when it takes longer than ``slow_call_duration_s``). OPEN
keeps the window it opened on (calls that were already running are still
recorded) and refuses calls until ``wait_in_open_s`` is over; the first call
after that moves it to HALF_OPEN, which lets ``permitted_in_half_open`` calls
through, judges them as one window, and closes (afresh) or opens again.
FORCED_OPEN, DISABLED and METRICS_ONLY are entered by hand; ``reset`` closes
it afresh. Every state change is kept with its time, for plots.
"""

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from couponsim.errors import InvalidInput


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    FORCED_OPEN = "FORCED_OPEN"
    DISABLED = "DISABLED"
    METRICS_ONLY = "METRICS_ONLY"


class WindowType(StrEnum):
    COUNT_BASED = "COUNT_BASED"
    TIME_BASED = "TIME_BASED"


@dataclass(frozen=True)
class BreakerConfig:
    """resilience4j's settings and defaults; times in seconds."""

    window_type: WindowType = WindowType.COUNT_BASED
    window_size: int = 100
    """Calls (count-based) or seconds (time-based)."""
    minimum_calls: int = 100
    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration_s: float = 60.0
    wait_in_open_s: float = 60.0
    permitted_in_half_open: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_type", WindowType(self.window_type))
        if self.window_size < 1 or self.minimum_calls < 1 or self.permitted_in_half_open < 1:
            raise InvalidInput("window_size, minimum_calls and permitted_in_half_open "
                               "must be at least 1")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            if not 0 < getattr(self, name) <= 100:
                raise InvalidInput(f"{name} is a percentage above 0 and at most 100")
        if self.slow_call_duration_s <= 0 or self.wait_in_open_s < 0:
            raise InvalidInput("slow_call_duration_s must be > 0 and wait_in_open_s >= 0")


@dataclass(frozen=True)
class Transition:
    at: float
    before: BreakerState
    after: BreakerState


@dataclass
class _Tally:
    calls: int = 0
    failed: int = 0
    slow: int = 0

    def add(self, failed: bool, slow: bool, sign: int = 1) -> None:
        self.calls += sign
        self.failed += sign * failed
        self.slow += sign * slow


class _CountWindow:
    """The last ``size`` outcomes."""

    def __init__(self, size: int) -> None:
        self.outcomes: deque[tuple[bool, bool]] = deque()
        self.size = size
        self.tally = _Tally()

    def record(self, now: float, failed: bool, slow: bool) -> _Tally:
        self.outcomes.append((failed, slow))
        self.tally.add(failed, slow)
        if len(self.outcomes) > self.size:
            self.tally.add(*self.outcomes.popleft(), sign=-1)
        return self.tally

    def current(self, now: float) -> _Tally:
        return self.tally


class _TimeWindow:
    """Outcomes of the last ``size`` whole seconds, one bucket per second."""

    def __init__(self, size: int) -> None:
        self.buckets: deque[tuple[int, _Tally]] = deque()
        self.size = size
        self.tally = _Tally()

    def current(self, now: float) -> _Tally:
        second = int(now)
        while self.buckets and self.buckets[0][0] <= second - self.size:
            _, old = self.buckets.popleft()
            self.tally.calls -= old.calls
            self.tally.failed -= old.failed
            self.tally.slow -= old.slow
        return self.tally

    def record(self, now: float, failed: bool, slow: bool) -> _Tally:
        self.current(now)
        second = int(now)
        if not self.buckets or self.buckets[-1][0] != second:
            self.buckets.append((second, _Tally()))
        self.buckets[-1][1].add(failed, slow)
        self.tally.add(failed, slow)
        return self.tally


@dataclass
class CircuitBreaker:
    config: BreakerConfig = field(default_factory=BreakerConfig)
    name: str = "breaker"
    state: BreakerState = BreakerState.CLOSED
    transitions: list[Transition] = field(default_factory=list)
    not_permitted: int = 0
    """Calls refused while OPEN, FORCED_OPEN or out of half-open permits."""

    def __post_init__(self) -> None:
        self._fresh_window()
        self._opened_at = 0.0
        self._half_open_left = 0

    def try_acquire(self, now: float) -> bool:
        """May a call go through now? (OPEN turns HALF_OPEN here once the wait is over.)"""
        if self.state is BreakerState.OPEN and now > self._opened_at + self.config.wait_in_open_s:
            self._move(now, BreakerState.HALF_OPEN)
        if self.state in (BreakerState.CLOSED, BreakerState.DISABLED, BreakerState.METRICS_ONLY):
            return True
        if self.state is BreakerState.HALF_OPEN and self._half_open_left > 0:
            self._half_open_left -= 1
            return True
        self.not_permitted += 1
        return False

    def release_permission(self) -> None:
        """Give back a permit without recording a call: resilience4j's
        ``releasePermission``, used for an ignored exception (the caller's mistake)."""
        if self.state is BreakerState.HALF_OPEN:
            self._half_open_left += 1

    def record(self, now: float, duration_s: float, failed: bool) -> None:
        """Record a permitted call's outcome: ``failed`` as the caller classifies it
        (an error or a timeout; SOLD_OUT and DUPLICATE are answers, not failures)."""
        if self.state in (BreakerState.DISABLED, BreakerState.FORCED_OPEN):
            return
        slow = duration_s > self.config.slow_call_duration_s
        tally = self._window.record(now, failed, slow)
        if self.state in (BreakerState.METRICS_ONLY, BreakerState.OPEN):
            return
        if self.state is BreakerState.HALF_OPEN:
            if tally.calls >= self.config.permitted_in_half_open:
                self._move(now, BreakerState.OPEN if self._over(tally) else BreakerState.CLOSED)
        elif tally.calls >= self._minimum() and self._over(tally):
            self._move(now, BreakerState.OPEN)

    def failure_rate(self, now: float) -> float:
        """Percentage of failed calls in the window; -1 below the minimum number of calls."""
        tally = self._window.current(now)
        return 100.0 * tally.failed / tally.calls if tally.calls >= self._minimum() else -1.0

    def slow_call_rate(self, now: float) -> float:
        tally = self._window.current(now)
        return 100.0 * tally.slow / tally.calls if tally.calls >= self._minimum() else -1.0

    def force_open(self, now: float) -> None:
        self._move(now, BreakerState.FORCED_OPEN)

    def disable(self, now: float) -> None:
        self._move(now, BreakerState.DISABLED)

    def metrics_only(self, now: float) -> None:
        self._move(now, BreakerState.METRICS_ONLY)

    def reset(self, now: float) -> None:
        self._move(now, BreakerState.CLOSED)

    def _minimum(self) -> int:
        if self.state is BreakerState.HALF_OPEN:
            return self.config.permitted_in_half_open
        if self.config.window_type is WindowType.COUNT_BASED:
            return min(self.config.minimum_calls, self.config.window_size)
        return self.config.minimum_calls

    def _over(self, tally: _Tally) -> bool:
        return (100.0 * tally.failed / tally.calls >= self.config.failure_rate_threshold
                or 100.0 * tally.slow / tally.calls >= self.config.slow_call_rate_threshold)

    def _fresh_window(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._window: _CountWindow | _TimeWindow = _CountWindow(
                self.config.permitted_in_half_open)
        elif self.config.window_type is WindowType.COUNT_BASED:
            self._window = _CountWindow(self.config.window_size)
        else:
            self._window = _TimeWindow(self.config.window_size)

    def _move(self, now: float, state: BreakerState) -> None:
        self.transitions.append(Transition(now, self.state, state))
        self.state = state
        if state is BreakerState.OPEN:
            self._opened_at = now      # keeps the window it opened on, as resilience4j does
        else:
            self._fresh_window()
        if state is BreakerState.HALF_OPEN:
            self._half_open_left = self.config.permitted_in_half_open
