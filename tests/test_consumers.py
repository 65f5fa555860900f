"""Consumers drain the issue queue into the database; whatever crashes, every
accepted request ends as exactly one stored coupon or an explicit FAILED with
its stock given back. Judged by the checker on Redis and database state."""

import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from couponsim.connection import connect
from couponsim.consumers import drain, drain_seed, run_consumer
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import (
    DatabaseUnavailable,
    InjectedCrash,
    InvalidInput,
    PersistenceError,
)
from couponsim.event import CouponEvent
from couponsim.flows import Variant
from couponsim.flows.consume import (
    ConsumerConfig,
    CrashPoint,
    consume_batch,
    consume_seed_batch,
    load_event,
)
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest, issue
from couponsim.flows.redeem import coupons_held
from couponsim.flows.status import RequestState, read_seed_status, read_status
from couponsim.keys import CouponKeys, user_coupons_key
from couponsim.persistence.repository import Repository
from couponsim.records import CouponStatus, Decided, Decision, IssuedCoupon
from couponsim.verify import check_invariants

from .conftest import open_event

NOW = 1_000


def issue_users(driver: SyncDriver, users: Sequence[str], variant: Variant = Variant.HARDENED,
                coupon: str = "c1") -> list[str]:
    flow = ISSUE_FLOWS[variant]
    return [driver.run(flow(IssueRequest(coupon, user, f"r-{user}-{n}"), NOW)).outcome
            for n, user in enumerate(users)]


def test_a_drained_queue_is_stored_once_with_final_statuses(system: SyncDriver) -> None:
    open_event(system, stock=5, validity_s=3600)
    assert issue_users(system, ["u1", "u2", "u3"]) == ["ISSUED"] * 3
    totals = drain(system, "c1")
    assert (totals.persisted, totals.compensated) == (3, 0)

    report = system.run(check_invariants("c1", with_database=True))
    assert report.ok, report.checks
    assert (report.persisted, report.in_flight, report.stock_left) == (3, 0, 2)
    stored = {c.request_id: c for c in system.repository.coupons_of("u2")}  # type: ignore[union-attr]
    coupon = stored["r-u2-1"]
    assert (coupon.status, coupon.expires_at_ms - coupon.issued_at_ms) == ("ACTIVE", 3_600_000)
    status = system.run(read_status("c1", "r-u2-1"))
    assert status is not None and status.state is RequestState.COMPLETED
    assert status.code == coupon.code
    assert system.client.hgetall(user_coupons_key("u2")) == {
        coupon.code: '{"coupon": "c1", "status": "ACTIVE"}'}
    assert system.client.ttl(CouponKeys("c1").request("r-u2-1")) > 0, "final: may expire"


@pytest.mark.parametrize("point", list(CrashPoint))
@pytest.mark.slow
def test_a_crash_at_any_point_loses_nothing_after_a_restart(system: SyncDriver,
                                                            point: CrashPoint) -> None:
    open_event(system, stock=10)
    issue_users(system, [f"u{n}" for n in range(8)])
    event = system.run(load_event("c1"))
    config = ConsumerConfig(batch_size=6, claim_idle_ms=0)
    with pytest.raises(InjectedCrash):
        system.run(consume_batch(event, "doomed", NOW, config, crash_at=point))

    mid = system.run(check_invariants("c1", with_database=True))
    expected_stored = 6 if point is CrashPoint.AFTER_COMMIT else 0
    assert (mid.persisted, mid.in_flight, mid.lost) == (expected_stored, 8, ())
    drain(system, "c1", "restarted", config)
    report = system.run(check_invariants("c1", with_database=True))
    assert report.ok, report.checks
    assert (report.persisted, report.in_flight, report.stock_left) == (8, 0, 2)


def test_the_seed_consumer_loses_what_it_popped_before_a_crash(system: SyncDriver) -> None:
    """The workbench finding the seed's flaw: popped, crashed, gone; the user still waits."""
    open_event(system, Variant.SEED, stock=30)
    issue_users(system, [f"u{n}" for n in range(25)], Variant.SEED)
    with pytest.raises(InjectedCrash):
        system.run(consume_seed_batch({}, NOW, 10, CrashPoint.AFTER_READ))
    drain_seed(system)
    report = system.run(check_invariants("c1", with_database=True))
    assert (report.persisted, report.lost_units) == (15, 10)
    assert not report.ok
    assert system.run(read_seed_status("r-u0-0")).state is RequestState.PROCESSING  # type: ignore[union-attr]
    assert system.run(read_seed_status("r-u24-24")).state is RequestState.COMPLETED  # type: ignore[union-attr]


class FlakyRepository(Repository):
    """A database that refuses to answer the first ``outages`` writes, then recovers."""

    def __init__(self, inner: Repository, outages: int) -> None:
        super().__init__(inner.engine)
        self.outages = outages

    def persist_issued(self, coupons: Sequence[IssuedCoupon],
                       fail_after_rows: int | None = None,
                       one_per_ordinal: bool = True,
                       unique_key: bool = True) -> dict[str, Decided]:
        if self.outages > 0:
            self.outages -= 1
            raise DatabaseUnavailable(self.url, "injected outage")
        return super().persist_issued(coupons, fail_after_rows, one_per_ordinal,
                                       unique_key)


@pytest.mark.slow
def test_a_database_down_for_a_while_loses_nothing(backend, repository: Repository) -> None:  # type: ignore[no-untyped-def]
    flaky = FlakyRepository(repository, outages=7)
    driver = SyncDriver(backend.client, backend.url, flaky, sleep=lambda _s: None)
    open_event(driver, stock=20)
    issue_users(driver, [f"u{n}" for n in range(12)])
    stop = threading.Event()
    config = ConsumerConfig(batch_size=5, claim_idle_ms=20, db_retries=1)
    worker = threading.Thread(target=run_consumer,
                              args=(driver, "c1", "w1", stop, config), kwargs={
                                  "outage_pause_s": 0.01})
    worker.start()
    try:
        report = wait_until_drained(driver)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert flaky.outages == 0, "the outage really happened"
    assert report.ok, report.checks
    assert (report.persisted, report.compensated) == (12, 0), "an outage never compensates"


def wait_until_drained(driver: SyncDriver, coupon: str = "c1", limit_s: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while True:
        report = driver.run(check_invariants(coupon, with_database=True))
        if report.in_flight == 0 or time.monotonic() > deadline:
            return report
        time.sleep(0.02)


class PoisonRepository(Repository):
    """A database that refuses one request's coupon for good."""

    def __init__(self, inner: Repository, poison: str) -> None:
        super().__init__(inner.engine)
        self.poison = poison

    def persist_issued(self, coupons: Sequence[IssuedCoupon],
                       fail_after_rows: int | None = None,
                       one_per_ordinal: bool = True,
                       unique_key: bool = True) -> dict[str, Decided]:
        if any(c.request_id == self.poison for c in coupons):
            raise PersistenceError("injected: refused for good")
        return super().persist_issued(coupons, fail_after_rows, one_per_ordinal,
                                       unique_key)


def test_an_entry_refused_for_good_is_compensated_after_n_deliveries(backend, repository) -> None:  # type: ignore[no-untyped-def]
    driver = SyncDriver(backend.client, backend.url, PoisonRepository(repository, "r-u2-2"))
    open_event(driver, stock=4)
    issue_users(driver, ["u0", "u1", "u2", "u3"])
    totals = drain(driver, "c1", config=ConsumerConfig(batch_size=10, claim_idle_ms=0,
                                                       max_deliveries=3))
    assert (totals.persisted, totals.compensated) == (3, 1)
    assert [r.left_pending for r in totals.reports[:3]] == [1, 1, 0]

    report = driver.run(check_invariants("c1", with_database=True))
    assert report.ok, report.checks
    assert (report.persisted, report.compensated, report.stock_left) == (3, 1, 1)
    failed = driver.run(read_status("c1", "r-u2-2"))
    assert failed is not None and failed.state is RequestState.FAILED and failed.reason
    dead = backend.client.xrange(CouponKeys("c1").dead)
    assert [fields["request"] for _id, fields in dead] == ["r-u2-2"]
    assert issue_users(driver, ["u2"]) == [IssueOutcome.ISSUED], "the user may try again"


def test_compensation_and_persistence_decide_a_request_exactly_once(
        repository: Repository) -> None:
    repository.save_coupon(CouponEvent("c1", stock=5))
    coupon = IssuedCoupon("C-1", "r1", "u1", "c1", 1, NOW, NOW + 10)
    first = repository.persist_issued([coupon])
    assert repository.persist_issued([coupon]) == first, "a redelivery changes nothing"
    assert repository.compensate("c1", {"r1": "late"})["r1"] == first["r1"]
    assert repository.compensate("c1", {"r2": "gone"})["r2"].code is None
    late = IssuedCoupon("C-2", "r2", "u2", "c1", 1, NOW, NOW + 10)
    assert repository.persist_issued([late])["r2"].code is None, "compensated: never stored"
    assert [c.request_id for c in repository.coupons_of("u1")] == ["r1"]
    assert repository.coupons_of("u2") == []


def test_the_database_enforces_the_per_user_limit_too(repository: Repository) -> None:
    """A second request for a (user, ordinal) the user holds is decided COMPENSATED at
    once (a promoted replica that forgot the user's mark issues those), whether the
    first was stored before or sits earlier in the same batch; the first keeps its code."""
    repository.save_coupon(CouponEvent("c1", stock=5))
    first = repository.persist_issued([IssuedCoupon("C-1", "r1", "u1", "c1", 1, NOW, NOW + 10)])
    again = repository.persist_issued([
        IssuedCoupon("C-2", "r2", "u1", "c1", 1, NOW, NOW + 10),
        IssuedCoupon("C-3", "r3", "u2", "c1", 1, NOW, NOW + 10),
        IssuedCoupon("C-4", "r4", "u2", "c1", 1, NOW, NOW + 10)])
    assert {request: decided.decision for request, decided in again.items()} == {
        "r2": Decision.COMPENSATED, "r3": Decision.PERSISTED, "r4": Decision.COMPENSATED}
    assert repository.persist_issued([IssuedCoupon("C-1", "r1", "u1", "c1", 1, NOW, NOW + 10)]) \
        == first, "a redelivery of the holder is still its own coupon"
    ledger = repository.ledger("c1")
    assert sorted(ledger.coupons) == [("r1", "u1", 1), ("r3", "u2", 1)]
    assert ledger.compensated == {"r2", "r4"}


def test_without_the_unique_key_the_seeds_save_stores_every_row(
        repository: Repository) -> None:
    """The seed's other reading of S28 (no unique key): a user's second coupon, in the
    same saveAll or a later one, is stored, numbered after the first; the default
    reading's key refuses the whole saveAll."""
    repository.save_coupon(CouponEvent("c1", stock=5))

    def coupon(request: str, user: str) -> IssuedCoupon:
        return IssuedCoupon(f"C-{request}", request, user, "c1", 1, NOW, NOW + 10)

    with pytest.raises(PersistenceError):
        repository.persist_issued([coupon("r1", "u1"), coupon("r2", "u1")], None, False)
    assert repository.ledger("c1").coupons == ()
    repository.persist_issued([coupon("r1", "u1"), coupon("r2", "u1"), coupon("r3", "u2")],
                              None, False, False)
    repository.persist_issued([coupon("r4", "u1")], None, False, False)
    assert sorted(repository.ledger("c1").coupons) == [
        ("r1", "u1", 1), ("r2", "u1", 2), ("r3", "u2", 1), ("r4", "u1", 3)]
    with pytest.raises(InvalidInput, match="one_per_ordinal=False"):
        repository.persist_issued([coupon("r5", "u3")], unique_key=False)


def _race_on_the_event_row(repository: Repository, unique_key: bool
                           ) -> tuple[list[dict[str, Decided]], list[Exception]]:
    """Two saves of user u1's coupons (requests r1, r2, both ordinal 1) started while the
    test holds the event's row, so both are waiting on it when it lets go; their answers
    and errors."""
    answers: list[dict[str, Decided]] = []
    errors: list[Exception] = []

    def persist(request: str) -> None:
        coupon = IssuedCoupon(f"C-{request}", request, "u1", "c1", 1, NOW, NOW + 10)
        try:
            # the hardened consumer's save, or the seed's with no unique key
            answers.append(repository.persist_issued([coupon], None, unique_key, unique_key))
        except Exception as exc:
            errors.append(exc)

    with repository.engine.connect() as holder:
        holder.execute(text("SELECT 1 FROM coupons WHERE id = 'c1' FOR UPDATE"))
        racers = [threading.Thread(target=persist, args=(r,)) for r in ("r1", "r2")]
        for racer in racers:
            racer.start()
        time.sleep(0.3)                              # both are blocked on the lock now
        holder.rollback()
    for racer in racers:
        racer.join(10)
    return answers, errors


@pytest.mark.postgres
def test_consumers_racing_without_the_unique_key_store_both_coupons(
        postgres_repository: Repository) -> None:
    """Two seed saves of one user's coupons at the same moment, with no unique key: the
    second waits on the event's row and numbers its row after the first's."""
    repository = postgres_repository
    repository.save_coupon(CouponEvent("c1", stock=5))
    _answers, errors = _race_on_the_event_row(repository, unique_key=False)
    assert errors == []
    assert sorted(n for _r, _u, n in repository.ledger("c1").coupons) == [1, 2]


def test_a_users_coupons_read_expired_once_past_their_validity(
        repository: Repository) -> None:
    """The list answers as the checkout judges: past its validity a coupon is EXPIRED,
    before the sweep has written it (nothing is written by reading)."""
    repository.save_coupon(CouponEvent("c1", stock=5))
    repository.persist_issued([IssuedCoupon("C-1", "r1", "u1", "c1", 1, NOW, NOW + 10)])
    driver = SyncDriver(connect("fake://held"), "fake://held", repository)
    assert [c.status for c in driver.run(coupons_held("u1", NOW + 9))] == [CouponStatus.ACTIVE]
    assert [c.status for c in driver.run(coupons_held("u1", NOW + 10))] == [
        CouponStatus.EXPIRED]
    assert repository.coupons_of("u1")[0].status == CouponStatus.ACTIVE.value


@pytest.mark.postgres
@pytest.mark.parametrize("cap_at_stock", [True, False])
def test_consumers_racing_on_one_users_ordinal_store_one_coupon(
        postgres_repository: Repository, cap_at_stock: bool) -> None:
    """Two consumers persist, at the same moment, two requests of one user for one
    ordinal (a promoted replica that forgot the first issues the second). Both wait on
    the event's row; the second then sees the first's coupon and is compensated,
    rather than failing its batch on the (user, coupon, ordinal) key."""
    repository = postgres_repository
    repository.cap_at_stock = cap_at_stock
    repository.save_coupon(CouponEvent("c1", stock=5))
    answers, errors = _race_on_the_event_row(repository, unique_key=True)
    assert errors == []   # none lost the race on the unique key
    decisions = sorted(decided.decision.value for answer in answers
                       for decided in answer.values())
    assert decisions == ["COMPENSATED", "PERSISTED"]
    assert len(repository.ledger("c1").coupons) == 1


@pytest.mark.real_redis
@pytest.mark.slow
def test_several_consumers_at_once_store_each_coupon_once(real_backend, repository) -> None:  # type: ignore[no-untyped-def]
    driver = SyncDriver(real_backend.client, real_backend.url, repository)
    open_event(driver, stock=500)
    issue_users(driver, [f"u{n}" for n in range(600)])
    stop = threading.Event()
    config = ConsumerConfig(batch_size=10, block_ms=20, claim_idle_ms=5)  # they reclaim
    workers = [threading.Thread(target=run_consumer,                      # each other's
                                args=(SyncDriver(real_backend.client, real_backend.url,
                                                 repository), "c1", f"w{n}", stop, config))
               for n in range(3)]
    for worker in workers:
        worker.start()
    try:
        report = wait_until_drained(driver)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert report.ok, report.checks
    assert (report.persisted, report.in_flight) == (500, 0)
    consumers = real_backend.client.xinfo_consumers(CouponKeys("c1").queue, "issuers")
    assert len([c for c in consumers if c["name"].startswith("w")]) >= 2, "they shared"


def test_an_entry_the_issue_script_did_not_write_is_dead_lettered_not_fatal(
        system: SyncDriver) -> None:
    open_event(system, stock=5)
    issue_users(system, ["u0", "u1"])
    junk = system.client.xadd(CouponKeys("c1").queue, {"junk": "1"})
    issue_users(system, ["u2"])
    totals = drain(system, "c1")
    assert (totals.persisted, sum(r.discarded for r in totals.reports)) == (3, 1)

    report = system.run(check_invariants("c1", with_database=True))
    assert report.unexpected == (f"entry {junk}",), "the checker names the foreign entry"
    assert (report.persisted, report.stock_left, report.lost, report.stuck) == (3, 2, (), ())
    assert [check.name for check in report.checks if not check.ok] == [
        "nothing unexpected (stored, never queued)"]


def test_a_pending_entry_deleted_from_the_stream_is_reported_lost_by_name(
        system: SyncDriver) -> None:
    open_event(system, stock=5)
    issue_users(system, ["u0", "u1", "u2"])
    event = system.run(load_event("c1"))
    with pytest.raises(InjectedCrash):
        system.run(consume_batch(event, "doomed", NOW, crash_at=CrashPoint.AFTER_READ))
    first_id = system.client.xrange(CouponKeys("c1").queue, count=1)[0][0]
    system.client.xdel(CouponKeys("c1").queue, first_id)
    drain(system, "c1")
    report = system.run(check_invariants("c1", with_database=True))
    assert report.lost == ("r-u0-0",)
    assert report.stuck == ("r-u0-0",), "its user still waits"
    assert (report.persisted, report.conservation_gap) == (2, -1)


def test_a_compensated_request_reads_failed_and_a_refused_one_too(backend,  # type: ignore[no-untyped-def]
                                                                   repository) -> None:
    driver = SyncDriver(backend.client, backend.url, PoisonRepository(repository, "r-u1-1"))
    open_event(driver, stock=2)
    assert issue_users(driver, ["u0", "u1", "u2"]) == ["ISSUED", "ISSUED", "SOLD_OUT"]
    drain(driver, "c1", config=ConsumerConfig(claim_idle_ms=0, max_deliveries=1))
    statuses = {r: driver.run(read_status("c1", r)) for r in ("r-u0-0", "r-u1-1", "r-u2-2")}
    assert {r: (s.state, s.reason) for r, s in statuses.items()} == {  # type: ignore[union-attr]
        "r-u0-0": (RequestState.COMPLETED, ""),
        "r-u1-1": (RequestState.FAILED, "the database refused the coupon"),
        "r-u2-2": (RequestState.FAILED, "SOLD_OUT"),
    }


def test_request_ids_are_unique_per_coupon_not_across_coupons(system: SyncDriver) -> None:
    """The same request id on two events is two requests, in Redis and in the database
    (found by the simulation: a retry id of one event met another event's id)."""
    for coupon in ("c1", "c2"):
        open_event(system, coupon_id=coupon, stock=2)
        system.run(issue(IssueRequest(coupon, "u1", "same-id"), NOW))
        drain(system, coupon)
    for coupon in ("c1", "c2"):
        report = system.run(check_invariants(coupon, with_database=True))
        assert report.ok, report.checks
        assert report.persisted == 1
    assert len(system.repository.coupons_of("u1")) == 2  # type: ignore[union-attr]
