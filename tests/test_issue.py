import itertools

import pytest

from couponsim.connection import connect
from couponsim.drivers.interleave import run_interleaved
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidId, RedisUnavailable, RequestIdConflict, UnknownCoupon
from couponsim.flows import Variant
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest, IssueResult, issue
from couponsim.keys import CouponKeys
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

VARIANTS = list(Variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_issue_until_sold_out(variant: Variant, driver: SyncDriver) -> None:
    open_event(driver, variant, stock=2)
    flow = ISSUE_FLOWS[variant]
    results = [driver.run(flow(IssueRequest("c1", user, f"r-{user}"), 5))
               for user in ("u1", "u2", "u3")]
    assert [(r.outcome, r.remaining) for r in results] == [
        (IssueOutcome.ISSUED, 1), (IssueOutcome.ISSUED, 0), (IssueOutcome.SOLD_OUT, 0)]
    report = driver.run(check_invariants("c1"))
    assert (report.issued, report.stock_left, report.ok) == (2, 0, True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_second_request_of_one_user_is_a_duplicate(variant: Variant, driver: SyncDriver) -> None:
    open_event(driver, variant, stock=5)
    flow = ISSUE_FLOWS[variant]
    first = driver.run(flow(IssueRequest("c1", "u1", "r1"), 5))
    second = driver.run(flow(IssueRequest("c1", "u1", "r2"), 6))
    assert (first.outcome, second.outcome) == (IssueOutcome.ISSUED, IssueOutcome.DUPLICATE)
    assert driver.run(check_invariants("c1")).stock_left == 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_unknown_coupon_is_an_error_and_writes_nothing(variant: Variant, driver: SyncDriver,
                                                         backend: Backend) -> None:
    with pytest.raises(UnknownCoupon):
        driver.run(ISSUE_FLOWS[variant](IssueRequest("ghost", "u1", "r1"), 5))
    assert backend.client.dbsize() == 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("coupon", "user", "request_id"),
                         [("c{1}", "u1", "r1"), ("c1", "", "r1"), ("c1", "u1", "r:1"),
                          ("c1", "u" * 65, "r1")])
def test_malformed_ids_fail_before_any_redis_call(variant: Variant, coupon: str, user: str,
                                                  request_id: str) -> None:
    with pytest.raises(InvalidId):
        IssueRequest(coupon, user, request_id)


def test_the_hardened_answer_to_a_repeated_request_id_is_the_first(driver: SyncDriver,
                                                                  backend: Backend) -> None:
    open_event(driver, stock=5)
    request = IssueRequest("c1", "u1", "r1")
    first = driver.run(issue(request, 5))
    again = driver.run(issue(request, 9))
    assert first == again == IssueResult(IssueOutcome.ISSUED, "r1", 4, 1)
    assert backend.client.get(CouponKeys("c1").stock) == "4"
    assert backend.client.hget(CouponKeys("c1").request("r1"), "status") == "PROCESSING"
    assert backend.client.ttl(CouponKeys("c1").request("r1")) == -1, "in flight: no expiry"


def test_a_request_id_reused_by_another_user_is_refused(driver: SyncDriver,
                                                        backend: Backend) -> None:
    open_event(driver, stock=5)
    driver.run(issue(IssueRequest("c1", "u1", "r1"), 5))
    before = {key: backend.client.dump(key) for key in backend.client.keys()}
    with pytest.raises(RequestIdConflict):
        driver.run(issue(IssueRequest("c1", "u2", "r1"), 6))
    assert {key: backend.client.dump(key) for key in backend.client.keys()} == before


def test_a_per_user_limit_above_one_numbers_the_users_coupons(driver: SyncDriver) -> None:
    open_event(driver, stock=10, per_user_limit=2)
    results = [driver.run(issue(IssueRequest("c1", "u1", f"r{n}"), 5)) for n in range(3)]
    assert [(r.outcome, r.ordinal) for r in results] == [
        (IssueOutcome.ISSUED, 1), (IssueOutcome.ISSUED, 2), (IssueOutcome.DUPLICATE, 0)]
    assert driver.run(check_invariants("c1")).ok


def _alternate() -> object:
    turns = itertools.cycle([0, 1])
    return lambda n: next(turns) % n


def test_a_double_click_interleaved_gets_two_coupons_from_the_seed(driver: SyncDriver) -> None:
    """Both clicks pass SISMEMBER before either SADDs: the check-then-act race."""
    open_event(driver, Variant.SEED, stock=5)
    clicks = [ISSUE_FLOWS[Variant.SEED](IssueRequest("c1", "u1", f"r{n}"), 5) for n in (1, 2)]
    results = run_interleaved(clicks, driver.execute, _alternate(), window=2)  # type: ignore[arg-type]
    assert [r.outcome for r in results] == [IssueOutcome.ISSUED, IssueOutcome.ISSUED]
    report = driver.run(check_invariants("c1"))
    assert report.duplicates == {"u1": 2}
    assert not report.ok


def test_the_same_double_click_gets_one_coupon_from_the_hardened_flow(driver: SyncDriver) -> None:
    open_event(driver, stock=5)
    clicks = [issue(IssueRequest("c1", "u1", f"r{n}"), 5) for n in (1, 2)]
    results = run_interleaved(clicks, driver.execute, _alternate(), window=2)  # type: ignore[arg-type]
    assert sorted(r.outcome for r in results) == [IssueOutcome.DUPLICATE, IssueOutcome.ISSUED]
    assert driver.run(check_invariants("c1")).ok


@pytest.mark.parametrize(
    "backend", ["fake", pytest.param("private", marks=pytest.mark.real_redis),
                pytest.param("cluster", marks=pytest.mark.redis_cluster)], indirect=True)
def test_scripts_survive_a_script_flush(driver: SyncDriver, backend: Backend) -> None:
    """After a restart or failover the SHA is unknown (NOSCRIPT): the script is reloaded.
    SCRIPT FLUSH empties the whole server, so a real one is this test's own (as the
    cluster is)."""
    open_event(driver, stock=5)
    driver.run(issue(IssueRequest("c1", "u1", "r1"), 5))
    backend.client.script_flush()
    assert driver.run(issue(IssueRequest("c1", "u2", "r2"), 5)).outcome is IssueOutcome.ISSUED


def test_pipelined_batches_give_the_same_answers(driver: SyncDriver) -> None:
    open_event(driver, stock=3)
    users = ["u1", "u2", "u1", "u3", "u4"]
    flows = [issue(IssueRequest("c1", user, f"r{n}"), 5) for n, user in enumerate(users)]
    results = driver.run_batch(flows)
    assert [r.outcome for r in results] == ["ISSUED", "ISSUED", "DUPLICATE", "ISSUED", "SOLD_OUT"]
    assert driver.run(check_invariants("c1")).ok


@pytest.mark.parametrize(
    "backend", ["fake", pytest.param("private", marks=pytest.mark.real_redis),
                pytest.param("cluster", marks=pytest.mark.redis_cluster)], indirect=True)
def test_pipelined_issues_for_one_coupon_leave_as_one_script_call(
        driver: SyncDriver, backend: Backend) -> None:
    """A round's issue calls for one coupon are one call of the batched script, each
    request still answered as one call each in that order would be. The calls are
    counted by a private server (INFO commandstats counts every client's)."""
    open_event(driver, stock=2)
    open_event(driver, coupon_id="c2", stock=1)
    users = ["u1", "u2", "u1", "u3", "u4", "u5"]
    flows = [issue(IssueRequest(f"c{1 + n % 2}", user, f"r{n}"), 5)
             for n, user in enumerate(users)]
    if backend.name == "private":
        backend.client.config_resetstat()
    results = driver.run_batch(flows)
    assert [(r.request_id, r.outcome) for r in results] == [
        ("r0", "ISSUED"), ("r1", "ISSUED"), ("r2", "DUPLICATE"), ("r3", "SOLD_OUT"),
        ("r4", "ISSUED"), ("r5", "SOLD_OUT")]
    if backend.name == "private":
        evalsha = backend.client.info("commandstats")["cmdstat_evalsha"]
        assert evalsha["calls"] - evalsha["failed_calls"] == 2, evalsha   # NOSCRIPT first
    assert driver.run(check_invariants("c1")).ok and driver.run(check_invariants("c2")).ok


def test_a_redis_that_is_down_is_a_clear_error_naming_the_url() -> None:
    url = "redis://:secret@127.0.0.1:1/0"
    with pytest.raises(RedisUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0") as caught:
        SyncDriver.from_url(url)
    assert "secret" not in str(caught.value)
    driver = SyncDriver(connect(url, check=False), url)
    with pytest.raises(RedisUnavailable):
        driver.run(issue(IssueRequest("c1", "u1", "r1"), 5))


def test_a_redis_lost_mid_batch_is_a_clear_error(fake_backend: Backend) -> None:
    driver = fake_backend.driver()
    open_event(driver, stock=5)
    fake_backend.client.connection_pool.connection_kwargs["server"].connected = False
    with pytest.raises(RedisUnavailable):
        driver.run_batch([issue(IssueRequest("c1", "u1", "r1"), 5)])
