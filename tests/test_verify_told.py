"""The checker judges what users were told: COMPLETED with no coupon stored,
PROCESSING once the queue is drained, a code the database does not hold for
its user. Each check is made to fail on the seed's records and on the
hardened ones, and passes on a clean run of either."""

from contextlib import suppress

import pytest
from sqlalchemy import text

from couponsim.consumers import drain, drain_seed
from couponsim.drivers import advance, finish
from couponsim.drivers.sync import SyncDriver
from couponsim.flows import Variant
from couponsim.flows.consume import consume_seed_batch
from couponsim.flows.issue import ISSUE_FLOWS, IssueRequest, issue_seed
from couponsim.flows.seed_options import SeedOptions, UniqueKey
from couponsim.keys import CouponKeys, user_coupons_key
from couponsim.verify import InvariantReport, check_invariants

from .conftest import open_event

NOW = 1_000
COMPLETED = "told COMPLETED only with a stored coupon"
PROCESSING = "nothing left PROCESSING once the queue is drained"
CODES = "codes told are the user's in the database"
DUPLICATE = "no duplicate (users over their limit)"


def verdicts(report: InvariantReport) -> dict[str, tuple[int, bool]]:
    return {check.name: (check.observed, check.ok) for check in report.checks}


def issue_all(driver: SyncDriver, variant: Variant, requests: list[tuple[str, str]]) -> None:
    for user, request in requests:
        driver.run(ISSUE_FLOWS[variant](IssueRequest("c1", user, request), NOW))


def double_click(driver: SyncDriver, user: str, first: str, second: str) -> None:
    """Both clicks pass the duplicate check (S12) before either marks the user (S15)."""
    flows = [issue_seed(IssueRequest("c1", user, request), NOW) for request in (first, second)]
    pending = []
    for flow in flows:
        effect = next(flow)
        for _ in range(2):              # GET, SISMEMBER
            effect = advance(flow, effect, driver.execute)
        pending.append((flow, effect))
    for flow, effect in pending:
        try:
            while True:
                effect = advance(flow, effect, driver.execute)
        except StopIteration:
            pass


def settle(driver: SyncDriver, variant: Variant) -> InvariantReport:
    if variant is Variant.SEED:
        drain_seed(driver, clock_ms=lambda: NOW)
    else:
        drain(driver, "c1", clock_ms=lambda: NOW)
    return driver.run(check_invariants("c1", with_database=True))


def test_a_clean_run_of_either_variant_passes_all_three(system: SyncDriver) -> None:
    for variant in Variant:
        system.client.flushdb()
        system.repository.purge_coupon("c1")  # type: ignore[union-attr]
        open_event(system, variant)
        issue_all(system, variant, [("u1", "r1"), ("u2", "r2")])
        told = verdicts(settle(system, variant))
        assert told[COMPLETED] == told[PROCESSING] == told[CODES] == (0, True), variant


def test_the_seed_batch_refused_by_the_database_fails_completed_and_codes(
        system: SyncDriver) -> None:
    """A double click puts one user twice into one batch; the unique key refuses the
    saveAll, after every user of the batch was told COMPLETED with a code (S24-S28)."""
    open_event(system, Variant.SEED)
    double_click(system, "u1", "r1", "r1b")
    issue_all(system, Variant.SEED, [("u2", "r2")])
    told = verdicts(settle(system, Variant.SEED))
    assert told[COMPLETED] == (3, False)
    assert told[CODES] == (3, False), "u1 shown two codes, u2 one, none stored"
    assert told[PROCESSING] == (0, True)


@pytest.mark.parametrize("batch_size", [10, 1], ids=["one-batch", "two-batches"])
@pytest.mark.parametrize("unique_key", ["user_coupon", "none"])
def test_the_readings_of_the_unique_key_fail_different_checks(
        system: SyncDriver, unique_key: UniqueKey, batch_size: int) -> None:
    """S28 read both ways. With the workbench's key, the saveAll holding the double
    click's second coupon is refused whole, after its users were told COMPLETED. With
    no key, every row is stored: what users were told holds, and the database's own
    rows show u1 holding two coupons of a one-per-user event."""
    open_event(system, Variant.SEED)
    double_click(system, "u1", "r1", "r1b")
    issue_all(system, Variant.SEED, [("u2", "r2")])
    totals = drain_seed(system, batch_size, clock_ms=lambda: NOW,
                        options=SeedOptions(unique_key=unique_key))
    report = system.run(check_invariants("c1", with_database=True))
    told = verdicts(report)
    ledger = system.repository.ledger("c1")  # type: ignore[union-attr]
    stored = sorted((user, n) for _request, user, n in ledger.coupons)
    if unique_key == "none":
        assert totals.dropped == 0
        assert stored == [("u1", 1), ("u1", 2), ("u2", 1)]
        assert report.duplicates == {"u1": 2}
        assert told[DUPLICATE] == (1, False)
        assert told[COMPLETED] == told[CODES] == (0, True)
        assert report.lost_units == 0
    else:
        refused = 3 if batch_size == 10 else 1          # the whole batch, or r1b's own
        assert totals.dropped == refused
        assert len(stored) == 3 - refused and report.duplicates == {}
        assert told[DUPLICATE] == (0, True)
        assert told[COMPLETED] == (refused, False)
        assert report.lost_units == refused
    assert not report.ok


def test_the_same_double_click_on_hardened_stores_one_coupon_under_either_reading(
        system: SyncDriver) -> None:
    """The hardened issue script marks the user in the same atomic step that takes the
    unit, so the second click is a DUPLICATE before anything is queued: no table key
    is needed to keep u1 at one coupon."""
    open_event(system, Variant.HARDENED)
    issue_all(system, Variant.HARDENED, [("u1", "r1"), ("u1", "r1b"), ("u2", "r2")])
    report = settle(system, Variant.HARDENED)
    ledger = system.repository.ledger("c1")  # type: ignore[union-attr]
    assert sorted(user for _request, user, _n in ledger.coupons) == ["u1", "u2"]
    assert report.ok and report.duplicates == {}


def test_the_seed_status_put_back_to_processing_fails_the_drained_check(
        system: SyncDriver) -> None:
    """S16 after S24: the consumer completes the request between the issue's push and
    its status write, which then puts PROCESSING back over COMPLETED."""
    open_event(system, Variant.SEED)
    flow = issue_seed(IssueRequest("c1", "u1", "r1"), NOW)
    effect = next(flow)
    for _ in range(3):                  # GET, SISMEMBER, decrement: next is the RPUSH
        effect = advance(flow, effect, system.execute)
    effect = advance(flow, effect, system.execute)      # RPUSH done; next is SADD
    system.run(consume_seed_batch({}, NOW))             # popped, stored, told COMPLETED
    effect = advance(flow, effect, system.execute)      # SADD; next is the status SET
    with suppress(StopIteration):
        advance(flow, effect, system.execute)
    assert system.client.get("coupon:status:r1") == "PROCESSING"
    report = system.run(check_invariants("c1", with_database=True))
    assert report.told is not None and report.told.processing_drained == ("r1",)
    assert verdicts(report)[PROCESSING] == (1, False)
    assert verdicts(report)[COMPLETED] == (0, True), "the coupon is stored"


def test_hardened_records_fail_each_check_when_the_store_disagrees(system: SyncDriver) -> None:
    open_event(system)
    issue_all(system, Variant.HARDENED, [("u1", "r1"), ("u2", "r2"), ("u3", "r3")])
    drain(system, "c1", clock_ms=lambda: NOW)
    keys = CouponKeys("c1")
    system.client.hset(keys.request("r2"), "status", "PROCESSING")
    code_u1 = system.repository.coupons_of("u1")[0].code  # type: ignore[union-attr]
    system.client.hset(user_coupons_key("u3"), code_u1, '{"coupon": "c1", "status": "ACTIVE"}')
    with system.repository.engine.begin() as connection:  # type: ignore[union-attr]
        connection.execute(text("DELETE FROM user_coupons WHERE request_id = 'r1'"))
    told = verdicts(system.run(check_invariants("c1", with_database=True)))
    assert told[COMPLETED] == (1, False), "r1 reads COMPLETED, its row is gone"
    assert told[PROCESSING] == (1, False), "r2 reads PROCESSING, its entry is acknowledged"
    assert told[CODES] == (2, False), "u1's code no longer stored; u3 shown u1's code"


def test_without_a_database_only_the_drained_check_is_judged(driver: SyncDriver) -> None:
    open_event(driver, Variant.SEED)
    finish(issue_seed(IssueRequest("c1", "u1", "r1"), NOW), driver.execute)
    names = {check.name for check in driver.run(check_invariants("c1")).checks}
    assert PROCESSING in names and COMPLETED not in names and CODES not in names
