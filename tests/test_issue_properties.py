"""Any mix of requests, in any interleaving, keeps the invariants: judged on Redis state."""

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couponsim.drivers.interleave import run_interleaved
from couponsim.drivers.sync import SyncDriver
from couponsim.flows import Variant
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue, issue_seed
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

users = st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=40)


@PROPERTY_SETTINGS
@given(stock=st.integers(min_value=1, max_value=15), per_user_limit=st.integers(1, 3),
       requesters=users, data=st.data())
@pytest.mark.slow
def test_hardened_issuance_keeps_every_invariant(backend: Backend, stock: int,
                                                 per_user_limit: int, requesters: list[int],
                                                 data: st.DataObject) -> None:
    backend.client.flushdb()
    driver = backend.driver()
    open_event(driver, stock=stock, per_user_limit=per_user_limit)
    flows = [issue(IssueRequest("c1", f"u{user}", f"r{n}"), 5)
             for n, user in enumerate(requesters)]
    window = data.draw(st.integers(1, 8), label="window")
    results = run_interleaved(flows, driver.execute,
                              lambda n: data.draw(st.integers(0, n - 1)), window)

    report = driver.run(check_invariants("c1"))
    assert report.ok, report.checks
    wanted = {user: min(per_user_limit, requesters.count(user)) for user in set(requesters)}
    assert report.issued == min(stock, sum(wanted.values()))
    assert report.issued == sum(r.outcome is IssueOutcome.ISSUED for r in results)
    assert all(report.coupons_per_user[f"u{user}"] <= n for user, n in wanted.items())


@settings(max_examples=60, deadline=None)
@given(requesters=users, stock=st.integers(1, 15), data=st.data())
@pytest.mark.slow
def test_the_seed_never_oversells_but_may_duplicate(requesters: list[int], stock: int,
                                                    data: st.DataObject) -> None:
    """The seed's stock script is atomic: its only flaw in issuing is duplicates."""
    server = fakeredis.FakeServer()
    driver = SyncDriver(fakeredis.FakeRedis(server=server, decode_responses=True), "fake://")
    open_event(driver, Variant.SEED, stock=stock)
    flows = [issue_seed(IssueRequest("c1", f"u{user}", f"r{n}"), 5)
             for n, user in enumerate(requesters)]
    run_interleaved(flows, driver.execute, lambda n: data.draw(st.integers(0, n - 1)), 4)
    report = driver.run(check_invariants("c1"))
    assert report.oversold == 0 and report.conservation_gap == 0 and report.stock_left >= 0
