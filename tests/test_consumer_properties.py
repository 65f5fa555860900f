"""Random interleavings of issue requests, consumer batches and crashes keep
every invariant of the hardened design, once a restarted consumer drains."""

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couponsim.consumers import drain
from couponsim.drivers.interleave import run_interleaved
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import PersistenceError
from couponsim.flows.consume import ConsumerConfig, CrashPoint, consume_batch, load_event
from couponsim.flows.issue import IssueOutcome, IssueRequest, IssueResult, issue
from couponsim.persistence.repository import Repository
from couponsim.records import Decided, IssuedCoupon
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

operations = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(0, 7)),
        st.tuples(st.just("consume"), st.sampled_from([None, *CrashPoint]), st.integers(1, 4)),
    ),
    min_size=1, max_size=24,
)


class RefusesUser(Repository):
    """A database that refuses one user's coupons for good (None: refuses nothing)."""

    def __init__(self, inner: Repository, user: str | None) -> None:
        super().__init__(inner.engine)
        self.user = user

    def persist_issued(self, coupons: Sequence[IssuedCoupon],
                       fail_after_rows: int | None = None,
                       one_per_ordinal: bool = True,
                       unique_key: bool = True) -> dict[str, Decided]:
        if any(coupon.user_id == self.user for coupon in coupons):
            raise PersistenceError("injected: this user's coupons are refused")
        return super().persist_issued(coupons, fail_after_rows, one_per_ordinal,
                                       unique_key)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stock=st.integers(1, 6), ops=operations, data=st.data(),
       refused=st.none() | st.integers(0, 7).map(lambda n: f"u{n}"))
@pytest.mark.slow
def test_any_interleaving_with_crashes_keeps_the_invariants(
        backend: Backend, repository: Repository, stock: int,
        ops: list[tuple], data: st.DataObject, refused: str | None) -> None:  # type: ignore[type-arg]
    backend.client.flushdb()
    repository.purge_coupon("c1")
    driver = SyncDriver(backend.client, backend.url, RefusesUser(repository, refused),
                        sleep=lambda _s: None)
    open_event(driver, stock=stock)
    event = driver.run(load_event("c1"))

    flows = []
    for n, op in enumerate(ops):
        if op[0] == "issue":
            flows.append(issue(IssueRequest("c1", f"u{op[1]}", f"r{n}"), 10 + n))
        else:
            config = ConsumerConfig(batch_size=op[2], claim_idle_ms=0, max_deliveries=2)
            flows.append(consume_batch(event, f"w{n}", 10 + n, config, crash_at=op[1]))
    results = run_interleaved(flows, driver.execute,
                              lambda k: data.draw(st.integers(0, k - 1)),
                              window=data.draw(st.integers(1, 6), label="window"))

    drain(driver, "c1", "restarted", ConsumerConfig(claim_idle_ms=0, max_deliveries=2))
    report = driver.run(check_invariants("c1", with_database=True))
    assert report.ok, report.checks
    told_issued = sum(isinstance(r, IssueResult) and r.outcome is IssueOutcome.ISSUED
                      for r in results)
    assert report.persisted + report.compensated == told_issued
    assert report.in_flight == 0
    if refused is None:
        users = {op[1] for op in ops if op[0] == "issue"}
        assert report.persisted == report.issued == min(stock, len(users))
