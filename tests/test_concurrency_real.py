"""Real threads against a real Redis: the hardened flow under true concurrency."""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from couponsim.drivers.sync import SyncDriver
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue
from couponsim.keys import CouponKeys
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

pytestmark = pytest.mark.real_redis


@pytest.mark.parametrize(("stock", "distinct_users"), [(100, 300), (500, 300)])
def test_many_threads_issue_exactly_min_of_stock_and_users(real_backend: Backend, stock: int,
                                                          distinct_users: int) -> None:
    driver = real_backend.driver()
    open_event(driver, stock=stock)
    rng = random.Random(stock)
    users = [f"u{rng.randrange(distinct_users)}" for _ in range(1_500)]
    users += [f"u{n}" for n in range(distinct_users)]  # every user asks at least once
    rng.shuffle(users)

    def fire(numbered: tuple[int, str]) -> IssueOutcome:
        n, user = numbered
        return SyncDriver(real_backend.client, real_backend.url).run(
            issue(IssueRequest("c1", user, f"r{n}"), 5)).outcome

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(fire, enumerate(users)))

    expected = min(stock, distinct_users)
    report = driver.run(check_invariants("c1"))
    assert report.ok, report.checks
    assert report.issued == expected
    assert report.stock_left == stock - expected
    holders = real_backend.client.hgetall(CouponKeys("c1").holders)
    assert {field for field in holders if "#" not in field} == set(report.coupons_per_user)
    assert all(holders[user] == "1" and f"{user}#1" in holders
               for user in report.coupons_per_user)
    assert outcomes.count(IssueOutcome.ISSUED) == expected
