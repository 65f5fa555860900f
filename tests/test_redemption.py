"""Applying coupons at checkout, exactly once, and giving them back on cancel."""

import json
import threading
import time
from collections.abc import Sequence

import pytest

from couponsim.consumers import drain
from couponsim.drivers import advance, finish
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import DiscountKind
from couponsim.flows.issue import IssueRequest, issue
from couponsim.flows.redeem import apply_coupon, apply_coupon_seed, release_coupon
from couponsim.keys import CouponKeys, redemption_lock_key, seed_lock_key, user_coupons_key
from couponsim.persistence.repository import Repository
from couponsim.pricing import ApplyOutcome, ApplyRequest, ApplyResult
from couponsim.records import CouponStatus
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

NOW = 1_000
DAY_MS = 24 * 3600 * 1000


def issued(system: SyncDriver, users: Sequence[str], **event: object) -> dict[str, str]:
    """Open an event, issue one coupon per user, drain: user -> code."""
    open_event(system, stock=len(users), validity_s=24 * 3600, **event)
    for user in users:
        system.run(issue(IssueRequest("c1", user, f"r-{user}"), NOW))
    drain(system, "c1")
    assert system.repository is not None
    return {user: system.repository.coupons_of(user)[0].code for user in users}


def apply(system: SyncDriver, user: str, order: str, code: str, amount: int,
          now: int = NOW + 1, token: str | None = None) -> ApplyResult:
    request = ApplyRequest(user, order, code, amount)
    return system.run(apply_coupon(request, now, token or f"t-{order}"))


def next_message(pubsub, timeout_s: float = 2.0):  # type: ignore[no-untyped-def]
    """The next published message; subscribe confirmations read as None, so wait past them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            return message
    return None


def status_of(repository: Repository | None, user: str) -> str:
    assert repository is not None
    return repository.coupons_of(user)[0].status


def test_apply_prices_the_order_and_marks_the_coupon_used(system: SyncDriver) -> None:
    codes = issued(system, ["u1"], discount_value=10_000)
    pubsub = system.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CouponKeys("c1").usage_channel)
    result = apply(system, "u1", "o1", codes["u1"], 25_000)
    assert (result.outcome, result.original, result.discount, result.final) == (
        ApplyOutcome.APPLIED, 25_000, 10_000, 15_000)
    assert status_of(system.repository, "u1") == "USED"
    assert json.loads(system.client.hget(user_coupons_key("u1"), codes["u1"]))["status"] == "USED"
    message = next_message(pubsub)
    assert message is not None and json.loads(message["data"])["event"] == "APPLIED"
    pubsub.close()
    assert not system.client.exists(redemption_lock_key(codes["u1"])), "lock released"
    assert system.run(check_invariants("c1", with_database=True)).ok


@pytest.mark.slow
def test_the_same_order_twice_answers_the_same_another_order_is_refused(
        system: SyncDriver) -> None:
    code = issued(system, ["u1"])["u1"]
    first = apply(system, "u1", "o1", code, 30_000)
    assert apply(system, "u1", "o1", code, 99_999) == first
    assert apply(system, "u1", "o2", code, 30_000).outcome is ApplyOutcome.ALREADY_USED
    assert system.run(check_invariants("c1", with_database=True)).ok


@pytest.mark.parametrize(("user", "code_of", "amount", "now", "expected"), [
    ("u2", "u1", 30_000, NOW + 1, ApplyOutcome.NOT_OWNED),
    ("u1", None, 30_000, NOW + 1, ApplyOutcome.UNKNOWN),
    ("u1", "u1", 30_000, NOW + DAY_MS, ApplyOutcome.EXPIRED),
    ("u1", "u1", 19_999, NOW + 1, ApplyOutcome.BELOW_MINIMUM),
])
def test_every_refusal_is_typed_and_changes_nothing(system: SyncDriver, user: str,
                                                    code_of: str | None, amount: int, now: int,
                                                    expected: ApplyOutcome) -> None:
    codes = issued(system, ["u1", "u2"], min_order=20_000)
    code = codes[code_of] if code_of else "C-NOSUCHCODE"
    result = apply(system, user, "o1", code, amount, now)
    assert (result.outcome, result.discount, result.final) == (expected, 0, amount)
    assert status_of(system.repository, "u1") == "ACTIVE"
    assert system.run(check_invariants("c1", with_database=True)).ok


def test_a_held_lock_is_a_locked_refusal(system: SyncDriver) -> None:
    code = issued(system, ["u1"])["u1"]
    system.client.set(redemption_lock_key(code), "someone-else")
    assert apply(system, "u1", "o1", code, 30_000).outcome is ApplyOutcome.LOCKED
    assert system.client.get(redemption_lock_key(code)) == "someone-else"


def test_bad_checkout_input_is_refused_before_anything_happens() -> None:
    for amount in (-1, 1.5, True, 2**60):
        with pytest.raises(InvalidInput):
            ApplyRequest("u1", "o1", "C-1", amount)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ApplyRequest("u1", "o:1", "C-1", 100)


def test_a_cancelled_order_gives_the_coupon_back_once(system: SyncDriver) -> None:
    code = issued(system, ["u1"])["u1"]
    apply(system, "u1", "o1", code, 30_000)
    released = system.run(release_coupon("u1", "o1", code, NOW + 2))
    assert released.status is CouponStatus.ACTIVE
    assert system.run(release_coupon("u1", "o1", code, NOW + 3)).status is None
    assert status_of(system.repository, "u1") == "ACTIVE"
    assert apply(system, "u1", "o2", code, 30_000).applied, "usable again"
    assert system.run(check_invariants("c1", with_database=True)).ok


def test_a_release_after_expiry_leaves_the_coupon_expired(system: SyncDriver) -> None:
    code = issued(system, ["u1"])["u1"]
    apply(system, "u1", "o1", code, 30_000)
    later = NOW + DAY_MS + 5
    assert system.run(release_coupon("u1", "o1", code, later)).status is CouponStatus.EXPIRED
    assert apply(system, "u1", "o2", code, 30_000, later).outcome is ApplyOutcome.EXPIRED


def test_the_seed_lock_expiring_under_a_slow_write_lets_two_orders_use_one_coupon(
        system: SyncDriver) -> None:
    """Order A reads the coupon, its lock expires before its write, order B takes the
    lock, reads, writes; then A writes too. Both orders got the discount."""
    code = issued(system, ["u1"])["u1"]
    a = apply_coupon_seed(ApplyRequest("u1", "oA", code, 30_000), NOW + 1)
    effect = next(a)
    for _ in range(3):  # HEXISTS ownership, SET NX EX, read: A's next effect is its write
        effect = advance(a, effect, system.execute)
    system.client.pexpire(seed_lock_key(code), 1)
    time.sleep(0.01)
    b_result = finish(apply_coupon_seed(ApplyRequest("u1", "oB", code, 30_000), NOW + 2),
                      system.execute)
    a_result = finish_from(a, effect, system)
    assert a_result.applied and b_result.applied
    findings = system.run(check_invariants("c1", with_database=True)).redemptions
    assert findings is not None and findings.used_twice == (code,)


def finish_from(flow, effect, driver: SyncDriver):  # type: ignore[no-untyped-def]
    try:
        while True:
            effect = advance(flow, effect, driver.execute)
    except StopIteration as stop:
        return stop.value


def test_the_hardened_flow_under_the_same_expiry_uses_the_coupon_once(system: SyncDriver) -> None:
    """A's lock expires and B takes it; A's compare-and-set still wins, A's release
    leaves B's lock alone, and B is refused by the database, not by the lock."""
    code = issued(system, ["u1"])["u1"]
    lock = redemption_lock_key(code)
    a = apply_coupon(ApplyRequest("u1", "oA", code, 30_000), NOW + 1, "token-a")
    b = apply_coupon(ApplyRequest("u1", "oB", code, 30_000), NOW + 2, "token-b")
    a_next = advance(a, next(a), system.execute)  # A holds the lock
    system.client.pexpire(lock, 1)
    time.sleep(0.01)
    b_next = advance(b, next(b), system.execute)  # B takes the expired lock
    assert system.client.get(lock) == "token-b"
    a_result = finish_from(a, a_next, system)
    assert system.client.get(lock) == "token-b", "A's unlock left B's lock alone"
    b_result = finish_from(b, b_next, system)
    assert (a_result.outcome, b_result.outcome) == (ApplyOutcome.APPLIED,
                                                    ApplyOutcome.ALREADY_USED)
    assert system.run(check_invariants("c1", with_database=True)).ok


@pytest.mark.real_redis
@pytest.mark.parametrize("flow", ["hardened-flow", "database-only"])
@pytest.mark.slow
def test_two_concurrent_applies_of_one_coupon_one_wins(real_backend: Backend,
                                                       repository: Repository,
                                                       flow: str) -> None:
    driver = SyncDriver(real_backend.client, real_backend.url, repository)
    code = issued(driver, ["u1"])["u1"]
    barrier = threading.Barrier(8)
    results: list[ApplyResult] = []

    def checkout(n: int) -> None:
        request = ApplyRequest("u1", f"o{n}", code, 30_000)
        barrier.wait()
        if flow == "database-only":  # the compare-and-set alone, no lock in front
            results.append(repository.apply_coupon(request, NOW + 1))
        else:
            worker = SyncDriver(real_backend.client, real_backend.url, repository)
            results.append(worker.run(apply_coupon(request, NOW + 1, f"t{n}")))

    threads = [threading.Thread(target=checkout, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert [r.outcome for r in results].count(ApplyOutcome.APPLIED) == 1
    assert driver.run(check_invariants("c1", with_database=True)).ok


class SlowWrites(Repository):
    """A database whose seed write takes longer than the seed's lock lives."""

    def __init__(self, inner: Repository, delay_s: float) -> None:
        super().__init__(inner.engine)
        self.delay_s = delay_s

    def mark_used_blindly(self, request, result, now_ms):  # type: ignore[no-untyped-def]
        time.sleep(self.delay_s)
        super().mark_used_blindly(request, result, now_ms)


@pytest.mark.real_redis
@pytest.mark.slow
def test_in_real_time_a_slow_seed_write_outlives_its_lock(real_backend: Backend,
                                                          repository: Repository) -> None:
    slow = SlowWrites(repository, delay_s=1.4)
    driver = SyncDriver(real_backend.client, real_backend.url, slow)
    code = issued(driver, ["u1"])["u1"]
    results: list[ApplyResult] = []

    def checkout(order: str) -> None:
        worker = SyncDriver(real_backend.client, real_backend.url, slow)
        results.append(worker.run(apply_coupon_seed(
            ApplyRequest("u1", order, code, 30_000), NOW + 1, lock_ttl_s=1)))

    first = threading.Thread(target=checkout, args=("oA",))
    first.start()
    time.sleep(1.1)  # A's lock (1 s) has expired; A is still writing
    checkout("oB")
    first.join(10)
    assert [r.outcome for r in results] == [ApplyOutcome.APPLIED, ApplyOutcome.APPLIED]
    findings = driver.run(check_invariants("c1", with_database=True)).redemptions
    assert findings is not None and findings.used_twice == (code,)


@pytest.mark.parametrize(("kind", "value", "cap", "amount", "discount"), [
    (DiscountKind.FIXED, 10_000, 0, 25_000, 10_000),
    (DiscountKind.FIXED, 10_000, 0, 7_000, 7_000),
    (DiscountKind.PERCENT, 15, 0, 9_999, 1_499),
    (DiscountKind.PERCENT, 50, 3_000, 10_000, 3_000),
    (DiscountKind.PERCENT, 100, 0, 123, 123),
])
def test_discounts_are_exact(system: SyncDriver, kind: DiscountKind, value: int, cap: int,
                             amount: int, discount: int) -> None:
    code = issued(system, ["u1"], discount_kind=kind, discount_value=value,
                  max_discount=cap)["u1"]
    result = apply(system, "u1", "o1", code, amount)
    assert (result.discount, result.final) == (discount, amount - discount)
