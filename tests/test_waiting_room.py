"""The waiting room: positions, measured waits, admission exactly once, drain on
sell-out, leaving and rejoining, the pre-queue; and the seed admission's flaw."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput, RequestIdConflict, UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.fairness import fairness
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue
from couponsim.flows.throttle import SharedLimit, Verdict, acquire_shared
from couponsim.flows.waiting_room import (
    admission_rate,
    admit,
    admit_seed,
    join_room,
    leave_room,
    recover_admitted,
    room_outcome_batch,
    room_outcomes,
    room_status,
)
from couponsim.keys import CouponKeys
from couponsim.verify import check_invariants

from .conftest import Backend, open_event

START = 1_000_000


def join_all(driver: SyncDriver, users: list[str], at: int = START) -> list[int]:
    return [driver.run(join_room("c1", user, f"q-{user}", at + n)).position
            for n, user in enumerate(users)]


def test_positions_follow_arrival_and_a_user_waits_at_most_once(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    assert join_all(driver, ["a", "b", "c"]) == [1, 2, 3]
    again = driver.run(join_room("c1", "a", "q-other", START + 99))
    assert (again.state, again.position, again.size) == ("WAITING", 1, 3)
    assert driver.client.hget(CouponKeys("c1").room_requests, "a") == "q-a"


def test_a_user_admitted_while_holding_a_coupon_is_pointed_at_it(driver: SyncDriver) -> None:
    """u1's later click put them in line while their first, slower one was issued (it
    outlived the time limiter): admitted, the room's issue is a DUPLICATE, and the room
    tells ISSUED with the request that holds the coupon, whose status has the code."""
    open_event(driver, stock=5, starts_at_ms=START)
    join_all(driver, ["u1", "u2"])
    assert driver.run(issue(IssueRequest("c1", "u1", "r1"), START + 1)).outcome is \
        IssueOutcome.ISSUED
    assert driver.run(admit("c1", 5, START + 100)).outcomes == {"u1": "ISSUED", "u2": "ISSUED"}
    told = driver.run(room_status("c1", "u1", START + 101))
    assert (told.state, told.request_id) == ("ISSUED", "r1")
    assert driver.client.hget(CouponKeys("c1").holders, "u1") == "1"


def test_equal_arrival_times_are_ordered_by_user_id(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    for user in ("m", "b", "x"):
        driver.run(join_room("c1", user, f"q-{user}", START + 5))
    ranks = {u: driver.run(room_status("c1", u, START + 6)).position for u in ("m", "b", "x")}
    assert ranks == {"b": 1, "m": 2, "x": 3}


def test_admission_takes_each_user_once_and_tells_the_outcome(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    join_all(driver, ["a", "b", "c"])
    first = driver.run(admit("c1", 2, START + 100))
    assert first.outcomes == {"a": "ISSUED", "b": "ISSUED"}
    assert driver.run(room_status("c1", "c", START + 101)).position == 1
    assert driver.run(room_status("c1", "a", START + 101)).state == "ISSUED"
    assert driver.run(admit("c1", 2, START + 200)).outcomes == {"c": "ISSUED"}
    assert driver.run(admit("c1", 2, START + 300)).outcomes == {}


def test_the_estimated_wait_comes_from_the_measured_admission_rate(driver: SyncDriver) -> None:
    open_event(driver, stock=100, starts_at_ms=START)
    join_all(driver, [f"u{n:02}" for n in range(40)])
    assert driver.run(room_status("c1", "u39", START + 50)).eta_s is None, "nothing measured"
    for second in range(3):                       # 5 users a second
        driver.run(admit("c1", 5, START + 1_000 * (second + 1)))
    status = driver.run(room_status("c1", "u39", START + 3_000))
    assert (status.position, status.admission_rate, status.eta_s) == (25, 5.0, 5.0)
    driver.run(admit("c1", 5, START + 30_000))    # after an idle spell: not a slow pace
    assert driver.run(room_status("c1", "u39", START + 30_000)).admission_rate == 5.0


def test_before_the_start_the_estimated_wait_is_at_least_the_time_until_it(
        driver: SyncDriver) -> None:
    open_event(driver, stock=100, starts_at_ms=START)
    join_all(driver, ["early", "later"], at=START - 10_000)
    before = driver.run(room_status("c1", "later", START - 4_000))
    assert (before.position, before.admission_rate, before.eta_s) == (2, None, 4.0)
    assert driver.run(room_status("c1", "later", START)).eta_s is None, "started: measure"
    assert driver.run(room_status("c1", "nobody", START - 4_000)).eta_s is None


def test_admission_rate_needs_two_batches() -> None:
    assert admission_rate([]) is None
    assert admission_rate(["1000:5"]) is None
    assert admission_rate(["2000:5", "1000:5"]) == 5.0
    assert admission_rate(["3000:10", "2000:10", "1000:10"]) == 10.0


def test_a_sell_out_drains_the_room_and_closes_it(driver: SyncDriver) -> None:
    open_event(driver, stock=2, starts_at_ms=START)
    join_all(driver, ["a", "b", "c", "d"])
    admission = driver.run(admit("c1", 2, START + 100))
    assert admission.outcomes == {"a": "ISSUED", "b": "ISSUED"}
    assert admission.drained == 2
    assert {u: driver.run(room_status("c1", u, START + 101)).state for u in "cd"} == {
        "c": "SOLD_OUT", "d": "SOLD_OUT"}
    late = driver.run(join_room("c1", "e", "q-e", START + 102))
    assert (late.state, late.position) == ("SOLD_OUT", 0)
    assert not driver.client.exists(CouponKeys("c1").waiting)
    # Closing wrote nothing per waiting user (its cost does not grow with the crowd):
    # their answer is resolved when read, by a rejoin too.
    assert driver.client.hget(CouponKeys("c1").room, "c") == "WAITING"
    assert driver.run(join_room("c1", "c", "q-c", START + 103)).state == "SOLD_OUT"


def test_leaving_and_rejoining_goes_to_the_back(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    join_all(driver, ["a", "b", "c"])
    assert driver.run(leave_room("c1", "a"))
    assert not driver.run(leave_room("c1", "a")), "leaving twice changes nothing"
    assert driver.run(room_status("c1", "b", START + 10)).position == 1
    assert driver.run(join_room("c1", "a", "q-a2", START + 20)).position == 3
    assert driver.run(admit("c1", 3, START + 30)).outcomes == {
        "b": "ISSUED", "c": "ISSUED", "a": "ISSUED"}


def test_an_admitted_user_cannot_leave_or_rejoin_for_a_second_try(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    join_all(driver, ["a"])
    driver.run(admit("c1", 1, START + 10))
    assert not driver.run(leave_room("c1", "a"))
    assert driver.run(join_room("c1", "a", "q-a3", START + 20)).state == "ISSUED"


def test_the_pre_queue_is_shuffled_and_comes_before_on_time_arrivals(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    for user, shuffle in (("early1", 900_000), ("early2", 5), ("early3", 400_000)):
        driver.run(join_room("c1", user, f"q-{user}", START - 60_000, shuffle))
    driver.run(join_room("c1", "ontime", "q-ontime", START + 1))
    order = driver.client.zrange(CouponKeys("c1").waiting, 0, -1)
    assert order == ["early2", "early3", "early1", "ontime"]


def test_bad_room_input_is_refused(driver: SyncDriver, backend: Backend) -> None:
    with pytest.raises(UnknownCoupon):
        driver.run(join_room("nope", "a", "q-a", START))
    with pytest.raises(InvalidInput):
        driver.run(join_room("c1", "a", "q-a", START, shuffle=1_000_000))
    assert backend.client.dbsize() == 0


def test_the_seed_admission_keeps_refused_users_and_retries_them_for_ever(
        driver: SyncDriver) -> None:
    open_event(driver, Variant.SEED, stock=1, starts_at_ms=START)
    join_all(driver, ["a", "b", "c"])
    for tick in range(3):
        driver.run(admit_seed("c1", START + 1_000 * (tick + 1)))
    assert driver.client.zrange(CouponKeys("c1").waiting, 0, -1) == ["b", "c"]
    assert driver.run(room_status("c1", "b", START + 4_000)).state == "WAITING", "never told"
    assert driver.run(check_invariants("c1")).ok, "no harm to the stock, only to the users"


@pytest.mark.real_redis
def test_concurrent_joins_and_admissions_on_real_redis(real_backend: Backend) -> None:
    driver = real_backend.driver()
    open_event(driver, stock=300, starts_at_ms=START)
    users = [f"u{n:03}" for n in range(400)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        joined = list(pool.map(
            lambda u: real_backend.driver().run(join_room("c1", u, f"q-{u}", START + 1)), users))
    assert all(a.state == "WAITING" and 1 <= a.position <= 400 for a in joined)
    assert real_backend.client.zcard(CouponKeys("c1").waiting) == 400

    admitted: list[dict[str, str]] = []
    lock = threading.Lock()

    def admitter(n: int) -> None:
        worker = real_backend.driver()
        while True:
            batch = worker.run(admit("c1", 7, START + 10 + n)).outcomes
            if not batch:
                return
            with lock:
                admitted.append(batch)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(admitter, range(4)))
    told = [user for batch in admitted for user in batch]
    assert len(told) == len(set(told)), "no user admitted twice"
    issued = [u for batch in admitted for u, o in batch.items() if o == "ISSUED"]
    assert len(issued) == 300
    room = driver.run(room_outcomes("c1"))
    assert {room[user] for user in users} <= {"ISSUED", "SOLD_OUT"}, "everyone was told"
    assert driver.run(check_invariants("c1")).ok


def test_a_shared_limit_allows_its_burst_then_one_per_interval(driver: SyncDriver) -> None:
    limit = SharedLimit("issue", limit=10, period_ms=1_000)
    verdicts = [driver.run(acquire_shared(limit, 5_000)) for _ in range(11)]
    assert verdicts[:10] == [Verdict(True)] * 10
    assert verdicts[10] == Verdict(False, 100)
    assert driver.run(acquire_shared(limit, 5_099)).allowed is False
    assert driver.run(acquire_shared(limit, 5_100)).allowed is True


@pytest.mark.real_redis
def test_instances_share_one_limit_on_real_redis(real_backend: Backend) -> None:
    limit = SharedLimit("issue", limit=25, period_ms=10_000)
    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(
            lambda _n: real_backend.driver().run(acquire_shared(limit, 7_000)), range(200)))
    assert sum(v.allowed for v in verdicts) == 25


def test_fairness_measures_overtaking() -> None:
    arrivals = ["a", "b", "c", "d", "e"]
    assert fairness(arrivals, ["a", "b", "c"], 3).early_share == 1.0
    skewed = fairness(arrivals, ["a", "e", "d"], 3)
    assert (skewed.early_share, skewed.overtaken) == (1 / 3, 2)
    assert fairness(arrivals, ["a", "b", "c"], 3).rank_correlation == 1.0
    assert fairness(arrivals, ["c", "b", "a"], 3).rank_correlation == -1.0


def test_closing_tells_a_waiting_user_who_already_holds_a_coupon_issued(
        driver: SyncDriver) -> None:
    """A request that timed out at the gateway after the script issued it waits in the
    room; when the room closes on sell-out, that user is told ISSUED, not SOLD_OUT."""
    open_event(driver, stock=2, starts_at_ms=START)
    assert driver.run(issue(IssueRequest("c1", "slow", "r-slow"), START)).outcome is \
        IssueOutcome.ISSUED
    driver.run(join_room("c1", "first", "q-first", START + 1))
    driver.run(join_room("c1", "slow", "r-slow", START + 2))
    driver.run(join_room("c1", "last", "q-last", START + 3))
    admission = driver.run(admit("c1", 1, START + 10))
    assert (admission.outcomes, admission.drained) == ({"first": "ISSUED"}, 2)
    states = {u: driver.run(room_status("c1", u, START + 11)).state for u in ("slow", "last")}
    assert states == {"slow": "ISSUED", "last": "SOLD_OUT"}


def test_closing_tells_a_double_click_that_waited_after_the_first_won_duplicate(
        driver: SyncDriver) -> None:
    """The user's first click was issued directly; their double click, sent behind the
    waiters, waits in the room with a request of its own, never issued. When the room
    closes, that click is a DUPLICATE, on the page and in the news alike: told ISSUED,
    it pointed at a status no one wrote (the model called it FORGOTTEN, the live page
    sent its user to a stream that answered 404)."""
    open_event(driver, stock=2, starts_at_ms=START)
    assert driver.run(issue(IssueRequest("c1", "quick", "r-quick"), START)).outcome is \
        IssueOutcome.ISSUED
    driver.run(join_room("c1", "first", "q-first", START + 1))
    driver.run(join_room("c1", "quick", "r-quick-again", START + 2))
    admission = driver.run(admit("c1", 1, START + 10))
    assert (admission.outcomes, admission.drained) == ({"first": "ISSUED"}, 1)
    page = driver.run(room_status("c1", "quick", START + 11))
    assert (page.state, page.request_id) == ("DUPLICATE", "r-quick-again")
    news = driver.run(room_outcome_batch("c1", ["quick", "first"]))
    assert news == [("DUPLICATE", "r-quick-again"), ("ISSUED", "q-first")]
    assert driver.run(room_outcomes("c1")) == {"first": "ISSUED", "quick": "DUPLICATE"}


def test_a_request_the_script_refused_before_it_waited_is_not_told_issued_at_the_close(
        driver: SyncDriver) -> None:
    """The script answered this request DUPLICATE (its record holds the refusal), but the
    call outlived the time limiter and the request waited in the room. The user holds a
    coupon, by another request: at the close this one is a DUPLICATE, not ISSUED with a
    status that reads FAILED."""
    open_event(driver, stock=2, starts_at_ms=START)
    assert driver.run(issue(IssueRequest("c1", "u", "r-won"), START)).outcome is \
        IssueOutcome.ISSUED
    assert driver.run(issue(IssueRequest("c1", "u", "r-late"), START + 1)).outcome is \
        IssueOutcome.DUPLICATE
    driver.run(join_room("c1", "first", "q-first", START + 2))
    driver.run(join_room("c1", "u", "r-late", START + 3))
    driver.run(admit("c1", 1, START + 10))
    assert driver.run(room_status("c1", "u", START + 11)).state == "DUPLICATE"
    assert driver.run(room_outcome_batch("c1", ["u"])) == [("DUPLICATE", "r-late")]


def test_a_request_id_of_another_user_cannot_join(driver: SyncDriver, backend: Backend) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    driver.run(issue(IssueRequest("c1", "a", "shared-id"), START))
    with pytest.raises(RequestIdConflict):
        driver.run(join_room("c1", "b", "shared-id", START + 1))
    assert not backend.client.zcard(CouponKeys("c1").waiting)


def test_an_admission_that_dies_midway_is_finished_by_recovery(backend: Backend) -> None:
    driver = backend.driver()
    open_event(driver, stock=5, starts_at_ms=START)
    join_all(driver, ["a", "b", "c"])
    flow = admit("c1", 3, START + 10)
    effect = next(flow)
    driver.execute(effect)                 # the batch is taken out of the room...
    flow.close()                           # ...and the admission job dies
    assert {u: driver.run(room_status("c1", u, START + 11)).state for u in "abc"} == {
        "a": "ADMITTED", "b": "ADMITTED", "c": "ADMITTED"}
    assert driver.run(join_room("c1", "a", "q-a", START + 12)).state == "ADMITTED"
    recovered = driver.run(recover_admitted("c1", START + 20))
    assert recovered.outcomes == {"a": "ISSUED", "b": "ISSUED", "c": "ISSUED"}
    assert driver.run(check_invariants("c1")).issued == 3


def test_users_admitted_before_the_start_go_back_in_line(driver: SyncDriver) -> None:
    driver.run(lifecycle.warm_up(CouponEvent("c1", stock=5, starts_at_ms=START)))
    driver.run(join_room("c1", "early", "q-early", START - 5_000, shuffle=7))
    assert driver.run(admit("c1", 5, START - 1_000)).outcomes == {"early": "REQUEUE"}
    assert driver.run(room_status("c1", "early", START - 999)).position == 1
    driver.run(lifecycle.activate("c1"))
    assert driver.run(admit("c1", 5, START + 1)).outcomes == {"early": "ISSUED"}


def test_an_ended_event_closes_the_room(driver: SyncDriver) -> None:
    driver.run(lifecycle.warm_up(CouponEvent("c1", stock=5, starts_at_ms=START)))
    join_all(driver, ["a", "b"], at=START - 10)
    driver.run(lifecycle.end("c1"))
    admission = driver.run(admit("c1", 1, START + 5))
    assert (admission.outcomes, admission.drained) == ({"a": "NOT_ACTIVE"}, 1)
    assert driver.run(room_status("c1", "b", START + 6)).state == "NOT_ACTIVE"
    assert driver.run(join_room("c1", "z", "q-z", START + 7)).state == "NOT_ACTIVE"


def test_a_sell_out_on_the_direct_path_keeps_newcomers_out(driver: SyncDriver) -> None:
    open_event(driver, stock=1, starts_at_ms=START)
    driver.run(issue(IssueRequest("c1", "fast", "r-fast"), START))
    assert driver.run(join_room("c1", "late", "q-late", START + 1)).state == "SOLD_OUT"
    assert driver.run(join_room("c1", "fast", "q-fast", START + 2)).state == "ISSUED"


def test_leaving_and_rejoining_the_pre_queue_keeps_the_first_draw(driver: SyncDriver) -> None:
    open_event(driver, stock=5, starts_at_ms=START)
    driver.run(join_room("c1", "x", "q-x", START - 100, shuffle=900_000))
    driver.run(join_room("c1", "y", "q-y", START - 90, shuffle=500_000))
    driver.run(leave_room("c1", "x"))
    assert driver.run(join_room("c1", "x", "q-x", START - 80, shuffle=1)).position == 2
