"""Batched scripts: requests sent as batches of any split get the answers, and leave the
store, that the same requests sent one call each get and leave (a script's mutation
that only shows in a batch, e.g. a stock carried along but not decremented, fails
here)."""

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Flow, lifecycle
from couponsim.flows.issue import IssueCall, IssueRequest, issue_batch
from couponsim.flows.throttle import SharedLimit, acquire_shared_batch
from couponsim.flows.waiting_room import RoomJoin, join_room_batch, leave_room, room_outcome_batch
from couponsim.keys import CouponKeys

from .conftest import Backend
from .store_dump import dump

DIFFERENTIAL = settings(max_examples=150, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])

STARTS_MS, ENDS_MS = 100, 1_000

issue_calls = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 7),
              st.sampled_from([50, STARTS_MS, 500, ENDS_MS, 2_000]), st.booleans()),
    min_size=1, max_size=25).map(
    lambda drawn: [(IssueRequest("c1", f"u{user}", f"r{request}"), now, behind)
                   for user, request, now, behind in drawn])


def _split(calls: Sequence[Any], cuts: set[int]) -> list[list[Any]]:
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < len(calls)), len(calls)]
    return [list(calls[a:b]) for a, b in pairwise(bounds)]


def _comparable(answer: object) -> object:
    return (type(answer).__name__, answer.args) if isinstance(answer, Exception) else answer


def _differential(backend: Backend, setup: Callable[[SyncDriver], None],
                  batch: Callable[[list[Any]], Flow[list[Any]]], calls: list[Any],
                  cuts: set[int]) -> None:
    runs = []
    for batches in ([[call] for call in calls], _split(calls, cuts)):
        backend.client.flushdb()
        driver = backend.driver()
        setup(driver)
        answers = [_comparable(answer) for part in batches for answer in driver.run(batch(part))]
        runs.append((answers, dump(backend.client)))
    (one_by_one, store_one), (batched, store_batched) = runs
    assert batched == one_by_one
    assert store_batched == store_one


@pytest.mark.slow
@DIFFERENTIAL
@given(calls=issue_calls, stock=st.integers(1, 4), per_user_limit=st.integers(1, 2),
       state=st.sampled_from(["unknown", "pending", "active", "ended"]),
       ends=st.booleans(), waiters=st.booleans(), data=st.data())
def test_issue_batches_answer_and_store_as_one_call_each(
        backend: Backend, calls: list[IssueCall], stock: int, per_user_limit: int,
        state: str, ends: bool, waiters: bool, data: st.DataObject) -> None:
    """Calls going behind the room's line (the gateway's) mixed with calls that do not
    (the admission's), with someone in the line or no one: the folded check is decided
    alike in any split."""
    event = CouponEvent("c1", stock=stock, per_user_limit=per_user_limit,
                        starts_at_ms=STARTS_MS, ends_at_ms=ENDS_MS if ends else 0)

    def setup(driver: SyncDriver) -> None:
        if state != "unknown":
            driver.run(lifecycle.warm_up(event))
        if state in ("active", "ended"):
            driver.run(lifecycle.activate("c1"))
        if state == "ended":
            driver.run(lifecycle.end("c1"))
        if waiters:
            backend.client.zadd(CouponKeys("c1").waiting, {"someone-waiting": 1})

    cuts = data.draw(st.sets(st.integers(1, max(1, len(calls) - 1))), label="cuts")
    _differential(backend, setup, issue_batch, calls, cuts)


@pytest.mark.slow
@DIFFERENTIAL
@given(times=st.lists(st.integers(0, 60_000), min_size=1, max_size=25),
       limit=st.integers(1, 3), data=st.data())
def test_rate_limiter_batches_answer_and_store_as_one_call_each(
        backend: Backend, times: list[int], limit: int, data: st.DataObject) -> None:
    """A period of ``limit`` x 10 s: the key's time to live (Redis's wall clock) outlasts
    the test, so expiry between calls cannot tell the two runs apart."""
    shared = SharedLimit("issue", limit, limit * 10_000)
    cuts = data.draw(st.sets(st.integers(1, max(1, len(times) - 1))), label="cuts")
    _differential(backend, lambda _driver: None,
                  lambda part: acquire_shared_batch(shared, part), times, cuts)


room_ops = st.lists(
    st.one_of(st.tuples(st.just("join"), st.integers(0, 4), st.integers(0, 6),
                        st.sampled_from([50, STARTS_MS, 500, ENDS_MS, 2_000]),
                        st.integers(0, 999_999)),
              st.tuples(st.just("leave"), st.integers(0, 4)),
              st.tuples(st.just("read"), st.integers(0, 4))),
    min_size=1, max_size=25)


def _room_part(part: list[tuple[Any, ...]]) -> Flow[list[Any]]:
    """Consecutive joins as one batch, consecutive reads as another; a leave (a script
    of its own) between them."""
    answers: list[Any] = []
    joins: list[RoomJoin] = []
    reads: list[str] = []
    for op in [*part, ("end",)]:
        if op[0] != "join" and joins:
            answers += yield from join_room_batch("c1", joins)
            joins = []
        if op[0] != "read" and reads:
            answers += yield from room_outcome_batch("c1", reads)
            reads = []
        match op:
            case ("join", user, request, now, shuffle):
                joins.append((f"u{user}", f"r{request}", now, shuffle))
            case ("read", user):
                reads.append(f"u{user}")
            case ("leave", user):
                answers.append((yield from leave_room("c1", f"u{user}")))
    return answers


@pytest.mark.slow
@DIFFERENTIAL
@given(ops=room_ops, state=st.sampled_from(["unknown", "open", "sold out", "closed", "ended"]),
       ends=st.booleans(), data=st.data())
def test_room_join_batches_answer_and_store_as_one_call_each(
        backend: Backend, ops: list[tuple[Any, ...]], state: str, ends: bool,
        data: st.DataObject) -> None:
    event = CouponEvent("c1", stock=2, starts_at_ms=STARTS_MS,
                        ends_at_ms=ENDS_MS if ends else 0)
    keys = CouponKeys("c1")

    def setup(driver: SyncDriver) -> None:
        if state == "unknown":
            return
        driver.run(lifecycle.warm_up(event))
        driver.run(lifecycle.activate("c1"))
        driver.run(issue_batch([(IssueRequest("c1", "u0", "held"), 200, False)]))
        if state == "sold out":
            backend.client.set(keys.stock, 0)
        elif state == "closed":
            backend.client.hset(keys.room, ":closed", "SOLD_OUT")
        elif state == "ended":
            driver.run(lifecycle.end("c1"))

    cuts = data.draw(st.sets(st.integers(1, max(1, len(ops) - 1))), label="cuts")
    _differential(backend, setup, _room_part, ops, cuts)


@pytest.mark.slow
@DIFFERENTIAL
@given(room=st.dictionaries(st.integers(0, 4), st.tuples(
           st.sampled_from([None, "WAITING", "LEFT", "ADMITTED", "ISSUED", "SOLD_OUT"]),
           st.booleans(), st.integers(0, 1))),
       closed=st.sampled_from([None, "SOLD_OUT", "NOT_ACTIVE"]),
       users=st.lists(st.integers(0, 5), min_size=1, max_size=12), data=st.data())
def test_room_read_batches_answer_as_one_call_each(
        backend: Backend, room: dict[int, tuple[str | None, bool, int]], closed: str | None,
        users: list[int], data: st.DataObject) -> None:
    """Reads of a room holding users in every state, closed or not (one user never in
    it): any split of the same reads gives the same answers and changes nothing."""
    keys = CouponKeys("c1")

    def setup(_driver: SyncDriver) -> None:
        for user, (state, has_request, held) in room.items():
            if state is not None:
                backend.client.hset(keys.room, f"u{user}", state)
            if has_request:
                backend.client.hset(keys.room_requests, f"u{user}", f"r{user}")
            if held:
                backend.client.hset(keys.holders, f"u{user}", held)
        if closed is not None:
            backend.client.hset(keys.room, ":closed", closed)

    cuts = data.draw(st.sets(st.integers(1, max(1, len(users) - 1))), label="cuts")
    _differential(backend, setup, lambda part: room_outcome_batch("c1", part),
                  [f"u{user}" for user in users], cuts)
