"""The seed flows' order of effects, pinned to docs/seed_trace.md.

Each test runs a seed flow on a real store, records every effect it yields,
names each by its trace row, and compares the sequence with the rows' order in
the document. A row whose effect moves, changes its key or TTL, or disappears
fails here.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest

from couponsim.drivers import finish
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Command, DbCall, Effect, Script
from couponsim.event import CouponEvent
from couponsim.flows import Flow, Variant, lifecycle
from couponsim.flows.consume import consume_seed_batch
from couponsim.flows.gateway import Gateway, Path, admission_round, gateway_issue
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue_seed
from couponsim.flows.redeem import apply_coupon_seed
from couponsim.flows.seed_options import SeedOptions
from couponsim.flows.status import RequestState, RequestStatus
from couponsim.flows.waiting_room import admit_seed, join_room_seed
from couponsim.keys import SEED_ISSUE_QUEUE, SEED_STATUS_CHANNEL, CouponKeys, user_coupons_key
from couponsim.persistence.repository import Repository
from couponsim.pricing import ApplyOutcome, ApplyRequest
from couponsim.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from couponsim.resilience.rate_limiter import RateLimiter, RateLimiterConfig
from couponsim.status_stream import watch_seed_status

from .conftest import Backend

NOW = 1_000
KEYS = CouponKeys("c1")


@pytest.fixture
def seed(fake_backend: Backend, sqlite_repository: Repository) -> SyncDriver:
    return SyncDriver(fake_backend.client, fake_backend.url, sqlite_repository,
                      sleep=lambda _s: None)


def record(driver: SyncDriver, flow: Flow[Any]) -> tuple[Any, list[Effect]]:
    effects: list[Effect] = []

    def execute(effect: Effect) -> Any:
        effects.append(effect)
        return driver.execute(effect)

    return finish(flow, execute), effects


def shape(effect: Effect) -> tuple[object, ...]:
    """What a row pins: the command and its key (and TTL), the script, the database call."""
    match effect:
        case Command("SET", (key, value, "EX", ttl)):
            return ("SET", key, value if value == "PROCESSING" else "...", "EX", ttl)
        case Command("SET", (key, _value, "NX", "EX", ttl)):
            return ("SET", key, "NX", "EX", ttl)
        case Command("EXPIRE", (key, ttl)):
            return ("EXPIRE", key, ttl)
        case Command("PUBLISH", (channel, _message)):
            return ("PUBLISH", channel)
        case Command(name, args):
            return (name, args[0]) if args else (name,)
        case Script(name, keys):
            return ("EVAL", name, *keys)
        case DbCall(method):
            return ("DB", method)
    raise AssertionError(f"unexpected effect {effect}")


def rows(*pairs: tuple[str, tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [shape_ for _row, shape_ in pairs]


def open_seed(driver: SyncDriver, stock: int = 10) -> None:
    driver.run(lifecycle.open_event(CouponEvent("c1", stock=stock), Variant.SEED))


ISSUE_ROWS = (
    ("S11", ("GET", KEYS.active)),
    ("S12", ("SISMEMBER", KEYS.issued)),
    ("S13", ("EVAL", "seed_decrement", KEYS.stock)),
    ("S14", ("RPUSH", SEED_ISSUE_QUEUE)),
    ("S15", ("SADD", KEYS.issued)),
    ("S16", ("SET", "coupon:status:r1", "PROCESSING", "EX", 600)),
)


def test_warm_up_and_activation_follow_s2_to_s8(seed: SyncDriver) -> None:
    _, warm = record(seed, lifecycle.warm_up_seed(CouponEvent("c1", stock=3)))
    assert [shape(e) for e in warm] == rows(
        ("S2", ("SET", KEYS.stock)), ("S4", ("HSET", KEYS.info)),
        ("S4", ("EXPIRE", KEYS.info, 7200)), ("S5", ("SET", KEYS.active)))
    assert 7000 < seed.client.ttl(KEYS.info) <= 7200
    seed.client.zadd(KEYS.waiting, {"early": 1})
    _, activate = record(seed, lifecycle.activate_seed("c1"))
    assert [shape(e) for e in activate] == rows(("S7", ("SET", KEYS.active)),
                                                ("S8", ("DEL", KEYS.waiting)))
    assert not seed.client.exists(KEYS.waiting), "S8: the room is emptied at the start"


def test_seed_daily_cron_sells_the_event_twice(seed: SyncDriver) -> None:
    """S1, S6: both crons fire every day. The next day's warm-up puts the whole stock
    back, and the next activation sells it again: twice the event's coupons."""
    event = CouponEvent("c1", stock=2)
    for day in range(2):
        seed.run(lifecycle.warm_up_seed(event))
        seed.run(lifecycle.activate_seed("c1"))
        for n in range(3):
            seed.run(issue_seed(IssueRequest("c1", f"d{day}u{n}", f"d{day}r{n}"), NOW))
        while seed.run(consume_seed_batch({}, NOW)).read:
            pass
    assert len(seed.repository.coupons_of_event("c1")) == 4  # type: ignore[union-attr]


def test_issue_follows_s11_to_s16_and_each_refusal_stops_at_its_row(seed: SyncDriver) -> None:
    open_seed(seed, stock=1)
    result, effects = record(seed, issue_seed(IssueRequest("c1", "u1", "r1"), NOW))
    assert result.outcome is IssueOutcome.ISSUED
    assert [shape(e) for e in effects] == rows(*ISSUE_ROWS)
    assert 590 < seed.client.ttl("coupon:status:r1") <= 600
    duplicate, effects = record(seed, issue_seed(IssueRequest("c1", "u1", "r2"), NOW))
    assert duplicate.outcome is IssueOutcome.DUPLICATE and len(effects) == 2   # S11, S12
    sold_out, effects = record(seed, issue_seed(IssueRequest("c1", "u2", "r3"), NOW))
    assert sold_out.outcome is IssueOutcome.SOLD_OUT and len(effects) == 3     # S11-S13


def test_consumer_tells_completed_before_it_saves_s21_to_s28(seed: SyncDriver) -> None:
    open_seed(seed)
    for user in ("u1", "u2"):
        seed.run(issue_seed(IssueRequest("c1", user, f"r-{user}"), NOW))
    report, effects = record(seed, consume_seed_batch({}, NOW))
    expected = rows(("S21", ("LPOP", SEED_ISSUE_QUEUE)), ("S21", ("LPOP", SEED_ISSUE_QUEUE)),
                    ("S21", ("LPOP", SEED_ISSUE_QUEUE)),
                    ("S23", ("HGETALL", KEYS.info)), ("S23", ("DB", "save_coupon")),
                    *told("u1"), *told("u2"), ("S28", ("DB", "persist_issued")))
    assert [shape(e) for e in effects] == expected
    assert report.persisted == 2


def told(user: str) -> list[tuple[str, tuple[object, ...]]]:
    return [("S24", ("SET", f"coupon:status:r-{user}", "...", "EX", 3600)),
            ("S25", ("PUBLISH", SEED_STATUS_CHANNEL)),
            ("S26", ("HSET", user_coupons_key(user)))]


def test_the_cache_field_follows_the_chosen_reading_of_s26(seed: SyncDriver) -> None:
    open_seed(seed)
    seed.run(issue_seed(IssueRequest("c1", "u1", "r-u1"), NOW))
    seed.run(consume_seed_batch({}, NOW, options=SeedOptions(cache_field="coupon")))
    assert list(seed.client.hkeys(user_coupons_key("u1"))) == ["c1"], "the key schema's field"
    code = seed.repository.coupons_of("u1")[0].code  # type: ignore[union-attr]
    refused = seed.run(apply_coupon_seed(ApplyRequest("u1", "o1", code, 50_000), NOW))
    assert refused.outcome is ApplyOutcome.NOT_OWNED, "S51 looks the code up: never there"


def test_a_consumer_batch_of_ten_pops_one_item_at_a_time(seed: SyncDriver) -> None:
    open_seed(seed, stock=20)
    for n in range(12):
        seed.run(issue_seed(IssueRequest("c1", f"u{n}", f"r{n}"), NOW))
    _, effects = record(seed, consume_seed_batch({}, NOW))
    pops = [e for e in effects if isinstance(e, Command) and e.name == "LPOP"]
    assert len(pops) == 10 and all(e.args == (SEED_ISSUE_QUEUE,) for e in pops)
    assert seed.client.llen(SEED_ISSUE_QUEUE) == 2


def test_room_join_and_admission_follow_s41_to_s49(seed: SyncDriver) -> None:
    open_seed(seed, stock=1)
    answer, effects = record(seed, join_room_seed("c1", "u1", NOW))
    assert [shape(e) for e in effects] == rows(("S41", ("ZADD", KEYS.waiting)),
                                               ("S42", ("ZRANK", KEYS.waiting)))
    assert (answer.state, answer.position) == ("WAITING", 1)
    seed.run(join_room_seed("c1", "u2", NOW + 1))
    admission, effects = record(seed, admit_seed("c1", NOW + 1_000))
    issue_rows = [shape(e) for e in effects[1:7]]
    assert shape(effects[0]) == ("ZRANGE", KEYS.waiting)                      # S46
    assert [r[0] for r in issue_rows] == [r[0] for r in rows(*ISSUE_ROWS)]    # S47
    assert issue_rows[-1][1] == "coupon:status:room-u1-2000", "a fresh request id per tick"
    assert shape(effects[7]) == ("ZREM", KEYS.waiting)                        # S48
    assert admission.outcomes == {"u1": "ISSUED", "u2": "SOLD_OUT"}
    assert seed.client.zrange(KEYS.waiting, 0, -1) == ["u2"], "S49: the refused user stays"


def test_redemption_releases_the_lock_last_s51_to_s58(seed: SyncDriver) -> None:
    open_seed(seed)
    seed.run(issue_seed(IssueRequest("c1", "u1", "r-u1"), NOW))
    seed.run(consume_seed_batch({}, NOW))
    code = seed.repository.coupons_of("u1")[0].code  # type: ignore[union-attr]
    result, effects = record(seed, apply_coupon_seed(ApplyRequest("u1", "o1", code, 50_000),
                                                     NOW))
    lock = f"coupon:lock:{{{code}}}"
    assert result.applied
    assert [shape(e) for e in effects] == rows(
        ("S51", ("HEXISTS", user_coupons_key("u1"))), ("S52", ("SET", lock, "NX", "EX", 10)),
        ("S53", ("DB", "find_coupon")), ("S55", ("DB", "mark_used_blindly")),
        ("S56", ("HSET", user_coupons_key("u1"))), ("S57", ("PUBLISH", KEYS.usage_channel)),
        ("S58", ("DEL", lock)))


def clock(start: int = NOW) -> Callable[[], int]:
    now = [start]

    def tick() -> int:
        now[0] += 1
        return now[0]
    return tick


def seed_gateway(**breaker: Any) -> Gateway:
    return Gateway(breaker=CircuitBreaker(BreakerConfig(**breaker)),
                   limiter=RateLimiter(RateLimiterConfig(limit_for_period=1,
                                                         refresh_period_s=1000.0,
                                                         timeout_s=0.0), created_at=0.0),
                   variant=Variant.SEED)


def test_the_seed_gateway_asks_the_breaker_before_the_limiter_s37(seed: SyncDriver) -> None:
    """CircuitBreaker ( RateLimiter ( TimeLimiter ( fn ) ) ): with the breaker open the
    rate limiter is never asked, so its one permit is still there afterwards."""
    open_seed(seed)
    gateway = seed_gateway()
    gateway.breaker.force_open(NOW / 1000)
    answer = seed.run(gateway_issue(gateway, IssueRequest("c1", "u1", "r1")))
    assert answer.path is Path.BREAKER_OPEN and answer.room_state == "WAITING"
    assert gateway.limiter is not None and gateway.limiter.acquire(NOW / 1000).granted


def test_every_refusal_is_a_failure_and_goes_to_the_room_s39_s40(seed: SyncDriver) -> None:
    """A sold-out answer is OutOfStockException in the document: the breaker records it
    as a failure and the fallback queues the user, who is never told it is over."""
    open_seed(seed, stock=1)
    gateway = Gateway(breaker=CircuitBreaker(BreakerConfig(window_size=2, minimum_calls=2)),
                      variant=Variant.SEED)
    first = seed.run(gateway_issue(gateway, IssueRequest("c1", "u1", "r1")))
    late = seed.run(gateway_issue(gateway, IssueRequest("c1", "u2", "r2")))
    assert first.outcome is IssueOutcome.ISSUED
    assert late.path is Path.REFUSED and late.room_state == "WAITING" and not late.final
    assert gateway.breaker.state is BreakerState.OPEN, "1 failure of 2 calls: 50% trips it"
    assert seed.client.zrange(KEYS.waiting, 0, -1) == ["u2"]
    assert seed.run(admission_round(gateway, "c1", 100)) is None, "S45: not healthy, no admission"


def test_the_seed_status_stream_misses_an_update_between_read_and_subscribe_s29_s36(
        seed: SyncDriver) -> None:
    """S31-S32: the status is read, then the stream subscribes; a COMPLETED published in
    between is never heard, and the stream ends in the timeout's error event."""
    open_seed(seed)
    seed.run(issue_seed(IssueRequest("c1", "u1", "r1"), NOW))
    stream = watch_seed_status(seed.client, "r1", timeout_s=0.5)
    assert next(stream) == RequestStatus("r1", RequestState.PROCESSING)
    seed.run(consume_seed_batch({}, NOW))          # COMPLETED set and published now
    assert list(stream) == [None], "missed: the user hears only the timeout's error"


def test_a_completed_read_first_does_not_end_the_seed_stream_s31(seed: SyncDriver) -> None:
    open_seed(seed)
    seed.run(issue_seed(IssueRequest("c1", "u1", "r1"), NOW))
    seed.run(consume_seed_batch({}, NOW))
    events = list(watch_seed_status(seed.client, "r1", timeout_s=0.3))
    assert [e.state if e else None for e in events] == [RequestState.COMPLETED, None]


def test_the_seed_stream_passes_on_a_published_update_s33(seed: SyncDriver) -> None:
    open_seed(seed)
    seed.run(issue_seed(IssueRequest("c1", "u1", "r1"), NOW))
    consumed = threading.Event()

    def consume_when_subscribed() -> None:
        seed.run(consume_seed_batch({}, NOW))
        consumed.set()

    events = list(watch_seed_status(seed.client, "r1", timeout_s=5.0,
                                    subscribed=consume_when_subscribed))
    assert consumed.is_set()
    assert [e.state if e else None for e in events] == [RequestState.PROCESSING,
                                                         RequestState.COMPLETED]
