"""End to end: an overload burst through the gateway in virtual time (SimPy). Redis
turns slow for a second, the time limiter fails the calls in flight, the breaker
opens, the waiting room takes the overflow, and the admission job (probing the
breaker) works it off. Every invariant holds afterwards and every user has a final
answer; and the seed's gateway lets late arrivals overtake the room."""

from dataclasses import dataclass

import pytest
import simpy

from couponsim.connection import connect
from couponsim.consumers import drain
from couponsim.drivers.simulated import flow_process, with_latency
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Effect
from couponsim.errors import RedisUnavailable, RequestIdConflict, UnknownCoupon
from couponsim.fairness import Fairness, fairness
from couponsim.flows.gateway import (
    Gateway,
    GatewayAnswer,
    Path,
    admission_round,
    gateway_issue,
)
from couponsim.flows.issue import IssueOutcome, IssueRequest
from couponsim.flows.throttle import SharedLimit
from couponsim.flows.waiting_room import room_outcomes
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from couponsim.resilience.time_limiter import TimeLimiter
from couponsim.verify import InvariantReport, check_invariants

from .conftest import Backend, open_event

ARRIVAL_GAP_MS = 10
USERS = 600
STOCK = 400
SLOW_FROM_MS, SLOW_UNTIL_MS = 1_000, 2_000


def latency(_effect: Effect, now: float) -> float:
    """5 ms a round trip, 1.5 s while Redis is slow."""
    return 1_500 if SLOW_FROM_MS <= now < SLOW_UNTIL_MS else 5


@dataclass
class Burst:
    answers: dict[str, GatewayAnswer]
    room_outcomes: dict[str, str]
    breaker: CircuitBreaker
    report: InvariantReport
    fairness: Fairness


def overload_burst(backend: Backend, repository: Repository,
                   queue_behind_waiters: bool) -> Burst:
    driver = SyncDriver(backend.client, backend.url, repository)
    open_event(driver, stock=STOCK, starts_at_ms=0)
    breaker = CircuitBreaker(BreakerConfig(window_size=10, minimum_calls=10, wait_in_open_s=2,
                                           permitted_in_half_open=3))
    gateway = Gateway(breaker, time_limiter=TimeLimiter(1.0),
                      queue_behind_waiters=queue_behind_waiters)
    env = simpy.Environment()
    perform = with_latency(env, driver.execute, latency)
    users = [f"u{n:03}" for n in range(USERS)]
    answers: dict[str, GatewayAnswer] = {}

    def arrive(user: str, at: float):  # type: ignore[no-untyped-def]
        yield env.timeout(at)
        answer = yield env.process(flow_process(
            env, gateway_issue(gateway, IssueRequest("c1", user, f"r-{user}")), perform))
        answers[user] = answer

    def admissions():  # type: ignore[no-untyped-def]
        """The admission job: every second, a batch of 100 while the breaker allows."""
        while env.now < 60_000:
            yield env.timeout(1_000)
            yield env.process(flow_process(env, admission_round(gateway, "c1", 100), perform))
            if env.now > USERS * ARRIVAL_GAP_MS and not backend.client.zcard(
                    CouponKeys("c1").waiting):
                return

    for n, user in enumerate(users):
        env.process(arrive(user, n * ARRIVAL_GAP_MS))
    env.process(admissions())
    env.run()

    # Winners in the order the issue script chose them: the queue's own order.
    winners = [fields["user"] for _id, fields in backend.client.xrange(CouponKeys("c1").queue)]
    drain(driver, "c1")
    return Burst(answers, driver.run(room_outcomes("c1")), breaker,
                 driver.run(check_invariants("c1", with_database=True)),
                 fairness(users, winners, STOCK))


@pytest.fixture
def burst(backend: Backend, repository: Repository) -> Burst:
    return overload_burst(backend, repository, queue_behind_waiters=True)


@pytest.mark.slow
def test_an_overload_burst_keeps_every_invariant(burst: Burst) -> None:
    assert burst.report.ok, burst.report.checks
    assert burst.report.persisted == STOCK
    assert any(t.after is BreakerState.OPEN for t in burst.breaker.transitions), \
        "the breaker was open part of the time"
    paths = {answer.path for answer in burst.answers.values()}
    assert {Path.DIRECT, Path.TIMED_OUT, Path.BREAKER_OPEN} <= paths


@pytest.mark.slow
def test_every_user_is_told_a_final_answer(burst: Burst) -> None:
    assert len(burst.answers) == USERS
    for user, answer in burst.answers.items():
        told = answer.outcome.value if answer.outcome else burst.room_outcomes.get(user)
        assert told in ("ISSUED", "SOLD_OUT", "DUPLICATE"), (user, answer, told)
    told_issued = [u for u, a in burst.answers.items() if a.outcome is IssueOutcome.ISSUED]
    told_issued += [u for u, o in burst.room_outcomes.items() if o == "ISSUED"]
    assert len(told_issued) == len(set(told_issued)) == STOCK


@pytest.mark.slow
def test_timed_out_requests_that_were_issued_are_answered_issued_once(burst: Burst) -> None:
    timed_out = [u for u, a in burst.answers.items() if a.path is Path.TIMED_OUT]
    assert timed_out
    assert all(burst.room_outcomes[u] == "ISSUED" for u in timed_out)
    holders = burst.report.coupons_per_user
    assert all(holders[u] == 1 for u in timed_out), "one coupon each, not a second"


@pytest.mark.slow
def test_the_seed_gateway_lets_late_arrivals_overtake_the_room(backend: Backend,
                                                              repository: Repository,
                                                              burst: Burst) -> None:
    backend.client.flushdb()
    repository.purge_coupon("c1")
    seed_like = overload_burst(backend, repository, queue_behind_waiters=False)
    assert seed_like.report.ok, "overtaking is unfair, not incorrect"
    assert seed_like.fairness.overtaken > 0
    assert burst.fairness.overtaken == 0
    assert burst.fairness.early_share > seed_like.fairness.early_share


def _run_now(driver: SyncDriver, clock: list[int]) -> SyncDriver:
    return SyncDriver(driver.client, driver.url, driver.repository, clock_ms=lambda: clock[0])


def test_before_the_start_the_gateway_sends_users_to_the_shuffled_pre_queue(
        driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=10_000)
    clock = [1_000]
    timed = _run_now(driver, clock)
    gateway = Gateway()
    for user, draw in (("a", 800_000), ("b", 3), ("c", 400_000)):
        answer = timed.run(gateway_issue(gateway, IssueRequest("c1", user, f"r-{user}"), draw))
        assert answer.room_state == "WAITING"
        assert answer.path in (Path.EARLY, Path.BEHIND_WAITERS)
    assert driver.client.zrange(CouponKeys("c1").waiting, 0, -1) == ["b", "c", "a"]
    clock[0] = 9_999   # the admission job's tick just before the start admits no one
    assert timed.run(admission_round(gateway, "c1", 10)) is None
    assert driver.client.zrange(CouponKeys("c1").waiting, 0, -1) == ["b", "c", "a"]
    assert set(driver.client.hvals(CouponKeys("c1").room)) == {"WAITING"}
    clock[0] = 10_001
    admission = timed.run(admission_round(gateway, "c1", 10))
    assert admission is not None and list(admission.outcomes) == ["b", "c", "a"]


def test_the_callers_mistakes_do_not_open_the_breaker_but_a_failing_redis_does(
        driver: SyncDriver) -> None:
    """resilience4j's ignoreExceptions: a client sending unknown coupons or another
    user's request id must not open the breaker for everyone."""
    open_event(driver, stock=5)
    gateway = Gateway(CircuitBreaker(BreakerConfig(window_size=2, minimum_calls=2)),
                      queue_behind_waiters=False)   # the issue call is the first round trip
    driver.run(gateway_issue(gateway, IssueRequest("c1", "a", "taken")))
    for _ in range(3):
        with pytest.raises(RequestIdConflict):
            driver.run(gateway_issue(gateway, IssueRequest("c1", "b", "taken")))
        with pytest.raises(UnknownCoupon):
            driver.run(gateway_issue(gateway, IssueRequest("nope", "b", "r-b")))
    assert gateway.breaker.state is BreakerState.CLOSED
    down = SyncDriver(connect("redis://127.0.0.1:1/0", check=False), "redis://127.0.0.1:1/0")
    for _ in range(2):
        with pytest.raises(RedisUnavailable):
            down.run(gateway_issue(gateway, IssueRequest("c1", "c", "r-c")))
    assert gateway.breaker.state is BreakerState.OPEN


def test_the_gateway_honours_a_shared_limit(driver: SyncDriver) -> None:
    open_event(driver, stock=50)
    gateway = Gateway(shared_limit=SharedLimit("gw", limit=3, period_ms=60_000))
    clock = [5_000]
    paths = [_run_now(driver, clock).run(
        gateway_issue(gateway, IssueRequest("c1", f"u{n}", f"r{n}"))).path for n in range(5)]
    assert paths == [Path.DIRECT] * 3 + [Path.LIMITED] * 2
