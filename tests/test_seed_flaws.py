"""Flaws of the faithful seed (docs/seed_trace.md) that the project did not show
before: each test runs the same steps on both variants; the seed breaks, the
hardened variant holds. The row numbers are the trace's."""

import pytest

from couponsim.drivers.sync import SyncDriver
from couponsim.errors import DatabaseUnavailable
from couponsim.event import CouponEvent
from couponsim.explore.explorer import exhaustive, replay
from couponsim.explore.scenarios import SCENARIOS
from couponsim.flows import Variant, lifecycle
from couponsim.flows.consume import ConsumerConfig, consume_batch, consume_seed_batch, load_event
from couponsim.flows.gateway import Gateway, admission_round, gateway_issue
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest
from couponsim.flows.status import RequestState, read_seed_status
from couponsim.flows.waiting_room import (
    admit,
    admit_seed,
    join_room,
    join_room_seed,
    room_outcome,
)
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from couponsim.status_stream import watch_seed_status, watch_status
from couponsim.verify import check_invariants

from .conftest import Backend
from .test_consumers import FlakyRepository

NOW = 1_000
KEYS = CouponKeys("c1")
SCHEDULES = 200


@pytest.fixture
def store(fake_backend: Backend, sqlite_repository: Repository) -> SyncDriver:
    return SyncDriver(fake_backend.client, fake_backend.url, sqlite_repository,
                      sleep=lambda _s: None)


def warm_up(driver: SyncDriver, variant: Variant, stock: int) -> None:
    event = CouponEvent("c1", stock=stock)
    driver.run(lifecycle.warm_up_seed(event) if variant is Variant.SEED
               else lifecycle.warm_up(event))


def activate(driver: SyncDriver, variant: Variant) -> None:
    driver.run(lifecycle.activate_seed("c1") if variant is Variant.SEED
               else lifecycle.activate("c1"))


def drain(driver: SyncDriver, variant: Variant) -> None:
    if variant is Variant.SEED:
        while driver.run(consume_seed_batch({}, NOW)).read:
            pass
    else:
        event = driver.run(load_event("c1"))
        while driver.run(consume_batch(event, "w", NOW)).read:
            pass


@pytest.mark.parametrize("name, broken", [
    ("double-click-stored", "told COMPLETED only with a stored coupon"),
    ("status-overwrite", "nothing left PROCESSING once the queue is drained"),
])
def test_the_explorer_breaks_the_seed_and_not_the_hardened_flows(name: str,
                                                                 broken: str) -> None:
    """S24-S28: a batch the database refuses was told COMPLETED already. S16 after S14:
    a consumer that completes the request before its status write is overwritten."""
    race = SCENARIOS[name]
    seed = exhaustive(race, Variant.SEED, SCHEDULES).counterexample
    assert seed is not None and broken in seed.broken
    same = replay(race, Variant.HARDENED, seed.choices)
    walk = exhaustive(race, Variant.HARDENED, SCHEDULES)
    assert same.ok and walk.counterexample is None and walk.complete


@pytest.mark.parametrize("variant", list(Variant))
def test_the_next_days_warm_up_and_activation_sell_the_stock_again(
        store: SyncDriver, variant: Variant) -> None:
    """S1, S6: both crons fire every day; the seed's plain SET puts the stock back."""
    for day in range(2):
        warm_up(store, variant, stock=2)
        activate(store, variant)
        for n in range(3):
            store.run(ISSUE_FLOWS[variant](IssueRequest("c1", f"d{day}u{n}", f"d{day}r{n}"), NOW))
        drain(store, variant)
    stored = len(store.repository.coupons_of_event("c1"))  # type: ignore[union-attr]
    assert stored == (4 if variant is Variant.SEED else 2)


@pytest.mark.parametrize("variant", list(Variant))
def test_the_activation_erases_who_queued_before_the_start(store: SyncDriver,
                                                           variant: Variant) -> None:
    """S8 with S40: a click before 14:00 fails (not active), the fallback queues the
    user, and the activation's DEL of the room forgets them: told QUEUED, never served."""
    warm_up(store, variant, stock=5)
    answer = store.run(gateway_issue(Gateway(variant=variant), IssueRequest("c1", "u1", "r1")))
    assert answer.room_state == "WAITING"
    activate(store, variant)
    store.run(admission_round(Gateway(variant=variant), "c1", 100))
    holds = bool(store.client.sismember(KEYS.issued, "u1")) or bool(
        store.client.hget(KEYS.holders, "u1"))
    if variant is Variant.SEED:
        assert not holds and not store.client.exists(KEYS.waiting), "gone, never told"
    else:
        assert holds and store.run(room_outcome("c1", "u1"))[0] == "ISSUED"


@pytest.mark.parametrize("variant", list(Variant))
def test_a_sold_out_answer_opens_the_breaker_and_queues_for_ever(store: SyncDriver,
                                                                  variant: Variant) -> None:
    """S39-S40, S49: sold out is OutOfStockException, a recorded failure; the fallback
    queues the user, and the room's admission retries them every second, telling no one."""
    warm_up(store, variant, stock=1)
    activate(store, variant)
    gateway = Gateway(breaker=CircuitBreaker(BreakerConfig(window_size=2, minimum_calls=2)),
                      variant=variant)
    store.run(gateway_issue(gateway, IssueRequest("c1", "u1", "r1")))
    late = store.run(gateway_issue(gateway, IssueRequest("c1", "u2", "r2")))
    if variant is Variant.SEED:
        assert not late.final and gateway.breaker.state is BreakerState.OPEN
    else:
        assert late.outcome is IssueOutcome.SOLD_OUT
        assert gateway.breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("variant", list(Variant))
def test_a_completed_status_read_first_ends_in_an_error_event(store: SyncDriver,
                                                                variant: Variant) -> None:
    """S31, S35-S36: the seed's stream sends the COMPLETED it read, stays open (only a
    published update ends it), and after the timeout sends an error as well."""
    warm_up(store, variant, stock=1)
    activate(store, variant)
    store.run(ISSUE_FLOWS[variant](IssueRequest("c1", "u1", "r1"), NOW))
    drain(store, variant)
    stream = (watch_seed_status(store.client, "r1", timeout_s=0.3) if variant is Variant.SEED
              else watch_status(store.client, "c1", "r1", timeout_s=0.3))
    states = [status.state if status else None for status in stream]
    assert states == ([RequestState.COMPLETED, None] if variant is Variant.SEED
                      else [RequestState.COMPLETED])


@pytest.mark.parametrize("variant", list(Variant))
def test_refused_users_at_the_front_block_the_room(store: SyncDriver, variant: Variant) -> None:
    """S46, S49: admission reads the first N and removes only winners. N users who hold
    a coupon already (a second click queued) answer DUPLICATE every tick and stay in
    front: the user behind them is never admitted, with stock left (N = 100 as
    written; 3 here)."""
    warm_up(store, variant, stock=10)
    activate(store, variant)
    for n in range(3):
        user = f"holder{n}"
        store.run(ISSUE_FLOWS[variant](IssueRequest("c1", user, f"r-{user}"), NOW))
        store.run(join_room_seed("c1", user, NOW + n) if variant is Variant.SEED
                  else join_room("c1", user, f"q-{user}", NOW + n))
    store.run(join_room_seed("c1", "late", NOW + 9) if variant is Variant.SEED
              else join_room("c1", "late", "q-late", NOW + 9))
    for tick in range(4):
        at = NOW + 1_000 * (tick + 1)
        store.run(admit_seed("c1", at, batch=3) if variant is Variant.SEED
                  else admit("c1", 3, at))
    late_holds = bool(store.client.sismember(KEYS.issued, "late")) or bool(
        store.client.hget(KEYS.holders, "late"))
    assert late_holds is (variant is Variant.HARDENED)
    assert int(store.client.get(KEYS.stock)) == (7 if variant is Variant.SEED else 6)


@pytest.mark.parametrize("variant", list(Variant))
def test_a_user_the_room_issued_a_coupon_to_is_never_told(store: SyncDriver,
                                                          variant: Variant) -> None:
    """S43, S47-S48: the room's answer has no request id, and admission issues with a
    fresh one that is sent nowhere: the winner's own request has no status."""
    warm_up(store, variant, stock=5)
    activate(store, variant)
    gateway = Gateway(variant=variant)
    gateway.breaker.force_open(NOW / 1000)
    queued = store.run(gateway_issue(gateway, IssueRequest("c1", "u1", "r1")))
    assert queued.room_state == "WAITING"
    gateway.breaker.reset(NOW / 1000)
    store.run(admit_seed("c1", NOW) if variant is Variant.SEED else admit("c1", 100, NOW))
    drain(store, variant)
    assert len(store.repository.coupons_of("u1")) == 1  # type: ignore[union-attr]
    if variant is Variant.SEED:
        assert store.run(read_seed_status("r1")) is None, "nothing to follow"
    else:
        assert store.run(room_outcome("c1", "u1")) == ("ISSUED", "r1")


@pytest.mark.parametrize("variant", list(Variant))
def test_a_database_that_fails_one_batch(fake_backend: Backend, sqlite_repository: Repository,
                                         variant: Variant) -> None:
    """S20, S24-S28: the save fails once (the database does not answer). The seed has
    told the batch COMPLETED already and drops it; the hardened consumer leaves its
    entries pending, and the next run stores them."""
    flaky = FlakyRepository(sqlite_repository, outages=1)
    store = SyncDriver(fake_backend.client, fake_backend.url, flaky, sleep=lambda _s: None)
    warm_up(store, variant, stock=5)
    activate(store, variant)
    for n in range(3):
        store.run(ISSUE_FLOWS[variant](IssueRequest("c1", f"u{n}", f"r{n}"), NOW))
    if variant is Variant.SEED:
        drain(store, variant)
    else:
        event = store.run(load_event("c1"))
        config = ConsumerConfig(db_retries=0, claim_idle_ms=0)
        with pytest.raises(DatabaseUnavailable):   # the loop around it waits and goes on
            store.run(consume_batch(event, "w", NOW, config))
        store.run(consume_batch(event, "w", NOW, config))
    report = store.run(check_invariants("c1", with_database=True))
    assert report.told is not None
    if variant is Variant.SEED:
        assert report.told.completed_unstored == ("r0", "r1", "r2")
        assert len(report.told.codes_not_held or ()) == 3 and not report.ok
    else:
        assert report.ok and report.persisted == 3
