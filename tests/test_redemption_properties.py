"""Random sequences of apply / cancel / expiry across users, orders and coupons:
a coupon is used at most once, only by its owner, only before it expires, and
every discount is exact. Judged by the checker on the database."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couponsim.consumers import drain
from couponsim.drivers.sync import SyncDriver
from couponsim.event import DiscountKind
from couponsim.flows.issue import IssueRequest, issue
from couponsim.flows.redeem import apply_coupon, release_coupon
from couponsim.persistence.repository import Repository
from couponsim.pricing import ApplyOutcome, ApplyRequest
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

ISSUED_AT = 1_000
VALIDITY_MS = 60_000
USERS = ["u0", "u1", "u2"]

steps = st.lists(st.one_of(
    st.tuples(st.just("apply"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 3),
              st.integers(0, 60_000)),
    st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.integers(1, 30_000)),
    st.tuples(st.just("expire_job")),
), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
@pytest.mark.slow
def test_any_checkout_history_keeps_the_redemption_invariants(
        fake_backend: Backend, sqlite_repository: Repository, steps: list[tuple]) -> None:  # type: ignore[type-arg]
    fake_backend.client.flushdb()
    sqlite_repository.purge_coupon("c1")
    driver = SyncDriver(fake_backend.client, fake_backend.url, sqlite_repository)
    open_event(driver, stock=3, discount_kind=DiscountKind.PERCENT, discount_value=15,
               max_discount=5_000, min_order=1_000, validity_s=VALIDITY_MS // 1000)
    for user in USERS:
        driver.run(issue(IssueRequest("c1", user, f"r-{user}"), ISSUED_AT))
    drain(driver, "c1")
    codes = [sqlite_repository.coupons_of(user)[0].code for user in USERS]

    now = ISSUED_AT
    open_orders = {}  # (order, code) -> the answer that applied it
    for n, step in enumerate(steps):
        if step[0] == "apply":
            _, user, code, order, amount = step
            request = ApplyRequest(USERS[user], f"o{order}", codes[code], amount)
            result = driver.run(apply_coupon(request, now, f"t{n}"))
            replay = open_orders.get((order, code))
            if replay is not None and code == user:
                assert result == replay, "the same (order, coupon) answers as the first time"
            elif result.applied:
                open_orders[(order, code)] = result
                assert code == user, "only the owner"
                assert now < ISSUED_AT + VALIDITY_MS, "only before expiry"
                assert amount >= 1_000
                assert result.discount == min(amount * 15 // 100, 5_000)
                assert result.final == amount - result.discount >= 0
            else:
                assert result.outcome is not ApplyOutcome.LOCKED, "locks are released"
        elif step[0] == "cancel":
            _, user, code, order = step
            released = driver.run(release_coupon(USERS[user], f"o{order}", codes[code], now))
            assert released.released == ((order, code) in open_orders and code == user)
            if released.released:
                del open_orders[(order, code)]
        elif step[0] == "tick":
            now += step[1]
        else:
            sqlite_repository.expire_coupons(now)

    report = driver.run(check_invariants("c1", with_database=True))
    assert report.ok, report.checks
