"""The breaker and limiters against resilience4j's documented behaviour, on a scripted clock."""

import pytest

from couponsim.errors import InvalidInput
from couponsim.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Transition,
    WindowType,
)
from couponsim.resilience.rate_limiter import Permit, RateLimiter, RateLimiterConfig
from couponsim.resilience.time_limiter import TimeLimiter


def calls(breaker: CircuitBreaker, outcomes: str, at: float = 0.0, duration: float = 0.01) -> None:
    """Record one call per letter: F failed, S succeeded, L slow success, X slow failure."""
    for letter in outcomes:
        assert breaker.try_acquire(at)
        slow = letter in "LX"
        breaker.record(at, duration if not slow else breaker.config.slow_call_duration_s + 0.001,
                       failed=letter in "FX")


def test_defaults_are_resilience4js() -> None:
    config = BreakerConfig()
    assert (config.window_type, config.window_size, config.minimum_calls,
            config.failure_rate_threshold, config.slow_call_rate_threshold,
            config.slow_call_duration_s, config.wait_in_open_s,
            config.permitted_in_half_open) == (
        WindowType.COUNT_BASED, 100, 100, 50.0, 100.0, 60.0, 60.0, 10)


def test_below_the_minimum_number_of_calls_the_rate_is_unknown_and_nothing_trips() -> None:
    breaker = CircuitBreaker()
    calls(breaker, "F" * 99)
    assert breaker.failure_rate(0) == -1
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, "F")
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(("outcomes", "state"), [
    ("F" * 50 + "S" * 50, BreakerState.OPEN),      # 50% >= 50%
    ("F" * 49 + "S" * 51, BreakerState.CLOSED),
    ("L" * 100, BreakerState.OPEN),                # slow-call rate 100% >= 100%
    ("L" * 99 + "S", BreakerState.CLOSED),
])
def test_the_thresholds_are_inclusive(outcomes: str, state: BreakerState) -> None:
    breaker = CircuitBreaker()
    calls(breaker, outcomes)
    assert breaker.state is state


def test_the_count_window_slides() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=10, minimum_calls=10))
    calls(breaker, "FFFF" + "S" * 6)        # 40%: closed
    calls(breaker, "SSSS")                  # the four failures slide out
    assert breaker.failure_rate(0) == 0
    calls(breaker, "FFFFF")                 # 5 of the last 10
    assert breaker.state is BreakerState.OPEN


def test_minimum_calls_above_a_count_window_uses_the_window() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=5, minimum_calls=100))
    calls(breaker, "FFFFF")
    assert breaker.state is BreakerState.OPEN


def test_open_refuses_until_the_wait_is_over_then_half_opens_on_the_next_call() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=4, wait_in_open_s=60))
    calls(breaker, "FFFF", at=100.0)
    assert breaker.failure_rate(100.0) == 100.0, "OPEN keeps the window it opened on"
    assert not breaker.try_acquire(159.9)
    assert not breaker.try_acquire(160.0), "only strictly after the wait"
    assert breaker.not_permitted == 2
    assert breaker.state is BreakerState.OPEN
    assert breaker.try_acquire(160.001)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.transitions == [
        Transition(100.0, BreakerState.CLOSED, BreakerState.OPEN),
        Transition(160.001, BreakerState.OPEN, BreakerState.HALF_OPEN),
    ]


def test_calls_finishing_while_open_are_still_recorded() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=4))
    for _ in range(4):
        assert breaker.try_acquire(0)
    for _ in range(4):        # four calls were running when the breaker opened
        breaker.record(1, 0.01, failed=True)
    breaker.record(2, 0.01, failed=False)
    assert (breaker.state, breaker.failure_rate(2)) == (BreakerState.OPEN, 75.0)


@pytest.mark.parametrize(("outcomes", "state"), [
    ("F" * 5 + "S" * 5, BreakerState.OPEN), ("F" * 4 + "S" * 6, BreakerState.CLOSED)])
def test_half_open_judges_its_permitted_calls_as_one_window(outcomes: str,
                                                            state: BreakerState) -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=4))
    calls(breaker, "FFFF")
    assert breaker.try_acquire(60.5)        # half-open; the first of 10 permits
    breaker.record(60.5, 0.01, failed=outcomes[0] == "F")
    for letter in outcomes[1:]:
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.try_acquire(61.0)
        breaker.record(61.0, 0.01, failed=letter == "F")
    assert breaker.state is state


def test_half_open_refuses_calls_beyond_its_permits() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=2, minimum_calls=2,
                                           permitted_in_half_open=3))
    calls(breaker, "FF")
    assert [breaker.try_acquire(60.5) for _ in range(4)] == [True, True, True, False]


def test_the_time_window_forgets_seconds_that_have_passed() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_type=WindowType.TIME_BASED, window_size=10,
                                           minimum_calls=4))
    calls(breaker, "FF", at=0.5)
    calls(breaker, "SS", at=10.5)           # the failures of second 0 have left the window
    assert breaker.failure_rate(10.5) == -1
    calls(breaker, "F", at=11.0)
    assert breaker.failure_rate(11.0) == -1, "3 calls in the window, below the minimum"
    calls(breaker, "F", at=11.0)             # 2 of 4 in the last 10 s: 50%
    assert breaker.transitions == [Transition(11.0, BreakerState.CLOSED, BreakerState.OPEN)]


def test_a_slow_call_rate_threshold_opens_on_slow_successes() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=4, minimum_calls=4,
                                           slow_call_rate_threshold=50, slow_call_duration_s=2))
    calls(breaker, "SL")
    breaker.try_acquire(0)
    breaker.record(0, 2.0, failed=False)     # exactly the slow duration is not slow
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, "L")                      # 2 slow of the last 4: 50%
    assert breaker.state is BreakerState.OPEN


def test_states_entered_by_hand() -> None:
    breaker = CircuitBreaker(BreakerConfig(window_size=2, minimum_calls=2))
    breaker.force_open(1)
    assert not breaker.try_acquire(1000)
    breaker.disable(2)
    calls(breaker, "FFFF", at=2)
    assert breaker.state is BreakerState.DISABLED
    assert breaker.failure_rate(2) == -1, "disabled records no metrics"
    breaker.metrics_only(3)
    calls(breaker, "FF", at=3)
    assert (breaker.state, breaker.failure_rate(3)) == (BreakerState.METRICS_ONLY, 100.0)
    breaker.reset(4)
    assert (breaker.state, breaker.failure_rate(4)) == (BreakerState.CLOSED, -1)
    assert [t.after for t in breaker.transitions] == [
        BreakerState.FORCED_OPEN, BreakerState.DISABLED, BreakerState.METRICS_ONLY,
        BreakerState.CLOSED]


@pytest.mark.parametrize("fields", [{"window_size": 0}, {"failure_rate_threshold": 0},
                                    {"slow_call_rate_threshold": 101},
                                    {"slow_call_duration_s": 0}, {"window_type": "BEST"}])
def test_bad_breaker_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises((InvalidInput, ValueError)):
        BreakerConfig(**fields)  # type: ignore[arg-type]


def test_a_rate_limiter_grants_its_limit_per_period() -> None:
    limiter = RateLimiter(RateLimiterConfig(limit_for_period=10, refresh_period_s=1.0,
                                            timeout_s=0))
    assert [limiter.acquire(0.1).granted for _ in range(11)] == [True] * 10 + [False]
    assert limiter.acquire(0.99).granted is False
    assert limiter.acquire(1.0).granted is True
    assert (limiter.granted, limiter.refused) == (11, 2)


def test_a_caller_within_the_timeout_reserves_ahead_and_waits() -> None:
    limiter = RateLimiter(RateLimiterConfig(limit_for_period=2, refresh_period_s=1.0,
                                            timeout_s=1.5))
    assert limiter.acquire(0.25) == Permit(True, 0.0)
    assert limiter.acquire(0.25) == Permit(True, 0.0)
    assert limiter.acquire(0.25) == Permit(True, 0.75)   # next cycle starts at 1.0
    assert limiter.available(0.25) == -1
    assert limiter.acquire(0.25) == Permit(True, 0.75)
    assert limiter.acquire(0.25) == Permit(False), "would wait 1.75 s > 1.5 s"
    assert limiter.available(1.0) == 0, "the next cycle's permits are spoken for"


def test_a_refused_caller_reserves_nothing() -> None:
    limiter = RateLimiter(RateLimiterConfig(limit_for_period=1, refresh_period_s=1.0,
                                            timeout_s=0.5))
    assert limiter.acquire(0.0).granted
    assert not limiter.acquire(0.2).granted            # would wait 0.8 s > 0.5 s
    assert limiter.available(0.2) == 0
    assert limiter.acquire(0.6) == Permit(True, pytest.approx(0.4))  # type: ignore[arg-type]


def test_idle_cycles_do_not_accumulate_beyond_the_limit() -> None:
    limiter = RateLimiter(RateLimiterConfig(limit_for_period=3, refresh_period_s=1.0,
                                            timeout_s=0), created_at=0.3)
    assert limiter.available(100.0) == 3
    assert [limiter.acquire(1.29).granted for _ in range(4)] == [True, True, True, False]
    assert limiter.acquire(1.3).granted, "cycles count from creation: a new one at 1.3"


def test_cycles_are_counted_in_whole_nanoseconds() -> None:
    limiter = RateLimiter(RateLimiterConfig(limit_for_period=1, refresh_period_s=0.1,
                                            timeout_s=0))
    assert [limiter.acquire(t).granted for t in (0.0, 0.1, 0.2, 0.3)] == [True] * 4


def test_more_permits_than_a_cycle_holds_wait_several_cycles() -> None:
    limiter = RateLimiter(RateLimiterConfig(limit_for_period=2, refresh_period_s=1.0,
                                            timeout_s=5))
    assert limiter.acquire(0.5, permits=5) == Permit(True, 1.5)   # 2 now, 2 at 1 s, 1 at 2 s
    assert limiter.available(2.0) == 1


def test_the_time_limiter_judges_the_budget() -> None:
    limiter = TimeLimiter()
    assert limiter.timeout_s == 1.0
    assert not limiter.timed_out(10.0, 11.0)
    assert limiter.timed_out(10.0, 11.001)
