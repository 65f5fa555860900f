"""The virtual waiting room: where requests go when the gateway will not take them now.

Per coupon, a sorted set scored by arrival (ties by user id), a state per user
and the request id their admission will issue with. An admission job takes the
next users out atomically, runs their issue flows and tells each the outcome;
on sell-out it closes the room at once, in O(1). The seed's admission, as
written, only removes users who got a coupon: the rest stay and are retried
every second for ever, and nobody is told.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import median

from couponsim.effects import BatchShape, Command, Pipeline, Script
from couponsim.errors import (
    CouponsimError,
    InvalidInput,
    RedisUnavailable,
    RequestIdConflict,
    UnknownCoupon,
)
from couponsim.flows import Flow, Variant
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest, IssueResult
from couponsim.flows.status import still_issued
from couponsim.ids import validate_id, validate_ms
from couponsim.keys import CouponKeys

SEED_ADMISSION_BATCH = 100
"""The seed admits 100 users a second, as written."""
ADMISSIONS_REMEMBERED = 10
"""Batches kept to measure the admission rate."""
PRE_QUEUE_SPREAD = 1_000_000
CLOSED = ":closed"
"""The room hash's field for the reason it closed (no user id can start with ':')."""


FINAL_STATES = frozenset({"ISSUED", "DUPLICATE", "SOLD_OUT", "NOT_ACTIVE", "FAILED"})
"""Room states that are an answer: the user waits no more."""


@dataclass(frozen=True)
class RoomAnswer:
    state: str
    """WAITING, ADMITTED, or an answer (see FINAL_STATES)."""
    position: int = 0
    size: int = 0


@dataclass(frozen=True)
class RoomStatus:
    state: str | None
    """None for a user who never joined."""
    position: int = 0
    size: int = 0
    eta_s: float | None = None
    """Estimated wait: the time until the start, plus the line at the measured admission
    rate; None after the start until two batches were seen."""
    admission_rate: float | None = None
    """Users admitted per second, measured."""
    request_id: str | None = None
    """The request the room issues (or issued) with for this user: its status is
    the coupon's, whichever of the user's clicks is asking."""


@dataclass(frozen=True)
class Admission:
    outcomes: dict[str, str]
    """What each admitted user was told (an IssueOutcome value, FAILED, or REQUEUE for
    one admitted before the event started, who is back in line)."""
    drained: int = 0
    """Users still waiting when the room closed: their answer is the reason it closed
    (or ISSUED for one who already holds a coupon), see :func:`told`."""


ROOM_JOIN_SHAPE = BatchShape(shared_keys=7, shared_args=0, keys_each=1, args_each=4,
                             reply_each=3)
"""lua/room_join.lua's layout: the room's and the event's seven keys, then each join's
request record; each join's user, request id, time and shuffle."""

RoomJoin = tuple[str, str, int, int]
"""One join: the user, the request id, the time it was made (ms), the shuffle draw."""
RoomJoinAnswer = RoomAnswer | UnknownCoupon | RequestIdConflict
"""One join's answer in a batch: where it stands, or the refusal :func:`join_room` raises."""


def join_room(coupon_id: str, user_id: str, request_id: str, now_ms: int,
              shuffle: int = 0) -> Flow[RoomAnswer]:
    """Wait in line; ``shuffle`` (0..999999, drawn by the caller) orders the pre-queue."""
    (answer,) = yield from join_room_batch(coupon_id, [(user_id, request_id, now_ms, shuffle)])
    if isinstance(answer, Exception):
        raise answer
    return answer


def join_room_batch(coupon_id: str, joins: Sequence[RoomJoin]) -> Flow[list[RoomJoinAnswer]]:
    """Many joins of one room in one script call, taken in their order exactly as one
    call each would take them; one answer per join, in order."""
    if not joins:
        return []
    for user_id, _request_id, now_ms, shuffle in joins:
        validate_id("user", user_id)
        validate_ms("now_ms", now_ms)
        if not 0 <= shuffle < PRE_QUEUE_SPREAD:
            raise InvalidInput(f"shuffle must be 0 to {PRE_QUEUE_SPREAD - 1}, got {shuffle}")
    keys = CouponKeys(coupon_id)
    replies = yield Script(
        "room_join",
        (keys.waiting, keys.room, keys.room_requests, keys.info, keys.active, keys.stock,
         keys.holders, *(keys.request(request_id) for _user, request_id, _now, _s in joins)),
        tuple(part for join in joins for part in join), ROOM_JOIN_SHAPE)
    answers: list[RoomJoinAnswer] = []
    for n, (user_id, request_id, _now, _shuffle) in enumerate(joins):
        state, position, size = replies[3 * n:3 * n + 3]
        answers.append(UnknownCoupon(coupon_id) if state == "UNKNOWN" else
                       RequestIdConflict(request_id, user_id) if state == "CONFLICT" else
                       RoomAnswer(state, position, size))
    return answers


def leave_room(coupon_id: str, user_id: str) -> Flow[bool]:
    keys = CouponKeys(coupon_id)
    left = yield Script("room_leave", (keys.waiting, keys.room), (validate_id("user", user_id),))
    return bool(left)


def room_status(coupon_id: str, user_id: str, now_ms: int) -> Flow[RoomStatus]:
    """Where the user stands, and how long the measured admission rate says it will take.

    Before the start no one is admitted, so the wait is at least the time until the
    start: that alone, while no batch has been measured yet, is the estimate.
    """
    keys = CouponKeys(coupon_id)
    rank, size, state, batches, request_id, closed, held, starts_at = yield Pipeline((
        Command("ZRANK", (keys.waiting, validate_id("user", user_id))),
        Command("ZCARD", (keys.waiting,)),
        Command("HGET", (keys.room, user_id)),
        Command("LRANGE", (keys.admissions, 0, -1)),
        Command("HGET", (keys.room_requests, user_id)),
        Command("HGET", (keys.room, CLOSED)),
        Command("HGET", (keys.holders, user_id)),
        Command("HGET", (keys.info, "starts_at_ms")),
    ), atomic=True)
    validate_ms("now_ms", now_ms)
    (answer,) = yield from _held_by_this_request(coupon_id, [(told(state, closed, held),
                                                              request_id)], [state])
    rate = admission_rate(batches)
    position = 0 if rank is None else rank + 1
    until_start_s = max(0, int(starts_at or 0) - now_ms) / 1000
    line_s = None if rate is None else position / rate
    eta = (None if not position or (line_s is None and not until_start_s)
           else until_start_s + (line_s or 0.0))
    return RoomStatus(answer[0], position, size, eta, rate, request_id)


def room_outcome(coupon_id: str, user_id: str) -> Flow[tuple[str | None, str | None]]:
    """What the room told the user, and the request it issued with: the one read a user
    makes when the room pushes news, lighter than :func:`room_status` (no position,
    no rate) because a closing room pushes to everyone at once."""
    (outcome,) = yield from room_outcome_batch(coupon_id, [user_id])
    return outcome


ROOM_READ_SHAPE = BatchShape(shared_keys=3, shared_args=0, keys_each=0, args_each=1,
                             reply_each=4)
"""lua/room_read.lua's layout: the room's three hashes, then each user."""


def room_outcome_batch(coupon_id: str, users: Sequence[str]
                       ) -> Flow[list[tuple[str | None, str | None]]]:
    """:func:`room_outcome` for many users in one call: the reads a closing room's news
    sets off arrive together."""
    keys = CouponKeys(coupon_id)
    replies = yield Script("room_read", (keys.room, keys.room_requests, keys.holders),
                           tuple(validate_id("user", user) for user in users), ROOM_READ_SHAPE)
    read = [replies[at:at + 4] for at in range(0, len(replies), 4)]
    return (yield from _held_by_this_request(
        coupon_id, [(told(state, closed, held), request_id) for state, request_id, closed, held
                    in read], [state for state, *_ in read]))


def _held_by_this_request(coupon_id: str, answers: list[tuple[str | None, str | None]],
                          stored: list[str | None]
                          ) -> Flow[list[tuple[str | None, str | None]]]:
    """A closed room tells a user who still waited ISSUED when they hold a coupon (:func:`
    told`), for the request that timed out at the gateway after the script issued it. A
    coupon issued to another of their requests (a double click sent to the room after
    the first one won) makes the waiting one a DUPLICATE, as :func:`couponsim.flows.
    gateway.settle_held` answers it: told ISSUED, it pointed at a status no one wrote.
    Only those few are looked up."""
    unsure = [n for n, ((answer, request_id), state) in enumerate(zip(answers, stored,
                                                                       strict=True))
              if answer == "ISSUED" and state == "WAITING" and request_id]
    if not unsure:
        return answers
    issued = yield from still_issued(coupon_id, [str(answers[n][1]) for n in unsure])
    settled = list(answers)
    for n, own in zip(unsure, issued, strict=True):
        if not own:
            settled[n] = ("DUPLICATE", answers[n][1])
    return settled


def room_outcomes(coupon_id: str) -> Flow[dict[str, str]]:
    """Every user's state in the room, as told: for checks and operators, not for a
    request path (it reads the whole room)."""
    keys = CouponKeys(coupon_id)
    room, holders, requests = yield Pipeline((Command("HGETALL", (keys.room,)),
                                              Command("HGETALL", (keys.holders,)),
                                              Command("HGETALL", (keys.room_requests,))),
                                             atomic=True)
    closed = room.pop(CLOSED, None)
    users = list(room)
    answers = yield from _held_by_this_request(
        coupon_id, [(told(room[user], closed, holders.get(user)), requests.get(user))
                    for user in users], [room[user] for user in users])
    return {user: answer or room[user] for user, (answer, _) in zip(users, answers, strict=True)}


def told(state: str | None, closed: str | None, held: str | None) -> str | None:
    """A user's answer from their stored state: closing the room does not visit each
    waiting user (that blocked Redis for a time proportional to the crowd), so one
    still WAITING in a closed room has the room's reason, or ISSUED if they hold a
    coupon (a request that timed out at the gateway after the script issued it)."""
    if state == "WAITING" and closed:
        return "ISSUED" if int(held or 0) > 0 else closed
    return state


def admission_rate(batches: list[str]) -> float | None:
    """Users admitted per second while admitting, from batches ``at_ms:count`` (newest first).

    Each batch after the oldest counts over the gap since the one before it, but
    no gap counts for more than the usual (median) one: a longer gap means the room
    was empty or the breaker open, not that admission was slow. The ETA it gives
    assumes admission goes on at that pace.
    """
    parsed = sorted((int(at), int(count)) for at, count in (b.split(":") for b in batches))
    gaps = [later - earlier for (earlier, _), (later, _) in pairwise(parsed)]
    if not gaps or max(gaps) <= 0:
        return None
    usual = median(gaps)
    span_ms = sum(min(gap, usual) for gap in gaps)
    return 1000 * sum(count for _at, count in parsed[1:]) / span_ms


def admit(coupon_id: str, batch: int, now_ms: int) -> Flow[Admission]:
    """The hardened admission: take the next users exactly once, issue, tell, close when done.

    A user whose issue fails for good (a conflicting request id) is told FAILED;
    one admitted before the start goes back in line. If Redis fails mid-batch the
    users stay ADMITTED, and :func:`recover_admitted` finishes them.
    """
    validate_ms("now_ms", now_ms)
    keys = CouponKeys(coupon_id)
    taken = yield Script("room_admit",
                         (keys.waiting, keys.room, keys.room_requests, keys.admissions),
                         (batch, now_ms, ADMISSIONS_REMEMBERED))
    users = list(zip(taken[::3], taken[1::3], taken[2::3], strict=True))
    return (yield from _serve(coupon_id, users, now_ms))


def recover_admitted(coupon_id: str, now_ms: int) -> Flow[Admission]:
    """Finish the users an admission left ADMITTED when it died: their issue is replayed
    with the same request id (so a coupon already issued is answered, not doubled)."""
    keys = CouponKeys(coupon_id)
    room, requests = yield Pipeline((Command("HGETALL", (keys.room,)),
                                     Command("HGETALL", (keys.room_requests,))), atomic=True)
    stranded = [(user, requests.get(user, ""), now_ms) for user, state in room.items()
                if state == "ADMITTED"]
    return (yield from _serve(coupon_id, stranded, now_ms))


def _serve(coupon_id: str, users: Sequence[tuple[str, str, float]],
           now_ms: int) -> Flow[Admission]:
    keys = CouponKeys(coupon_id)
    outcomes: dict[str, str] = {}
    scores: dict[str, float] = {}
    sold_out = False
    for user, request_id, score in users:
        try:
            result: IssueResult = yield from ISSUE_FLOWS[Variant.HARDENED](
                IssueRequest(coupon_id, user, request_id or f"room-{user}"), now_ms)
        except RedisUnavailable:
            raise
        except CouponsimError:       # e.g. a request id that became another user's
            outcomes[user] = "FAILED"
            continue
        sold_out |= result.outcome is IssueOutcome.SOLD_OUT or result.remaining == 0
        outcomes[user] = ("REQUEUE" if result.outcome is IssueOutcome.NOT_ACTIVE
                          else result.outcome.value)
        scores[user] = score
    if not outcomes:
        return Admission({})
    yield from _point_holders_at_their_coupon(keys, outcomes)
    close = "SOLD_OUT" if sold_out else ""
    if "REQUEUE" in outcomes.values() and (yield Command("GET", (keys.active,))) == "ended":
        close = "NOT_ACTIVE"
        outcomes = {u: "NOT_ACTIVE" if o == "REQUEUE" else o for u, o in outcomes.items()}
    triples = [item for user, outcome in outcomes.items()
               for item in (user, outcome, scores.get(user, now_ms))]
    drained = yield Script("room_settle", (keys.waiting, keys.room),
                           (keys.room_channel, close, *triples))
    return Admission(outcomes, drained)


def _point_holders_at_their_coupon(keys: CouponKeys, outcomes: dict[str, str]) -> Flow[None]:
    """A user admitted with a DUPLICATE holds a coupon from another of their requests:
    one that outlived the time limiter after the script issued it, while a later click
    of theirs had already put them in line. Told DUPLICATE, they would never see the
    code; told ISSUED, with the room's request pointed at the one holding the coupon,
    they follow its status to the code (as a closed room answers a holder, see
    :func:`told`)."""
    duplicates = [user for user, outcome in outcomes.items() if outcome == "DUPLICATE"]
    if not duplicates:
        return
    holding = yield Pipeline(tuple(Command("HGET", (keys.holders, f"{user}#1"))
                                   for user in duplicates))
    held = {user: request for user, request in zip(duplicates, holding, strict=True)
            if request}
    if held:
        yield Command("HSET", (keys.room_requests,
                               *(item for pair in held.items() for item in pair)))
        outcomes.update(dict.fromkeys(held, "ISSUED"))


def join_room_seed(coupon_id: str, user_id: str, now_ms: int) -> Flow[RoomAnswer]:
    """The seed's fallback, as written (docs/seed_trace.md S41-S43): ZADD with the time
    as score, then ZRANK. A user already waiting is moved to the back (ZADD replaces
    the score); the answer carries a position and nothing to follow."""
    validate_ms("now_ms", now_ms)
    keys = CouponKeys(coupon_id)
    user = validate_id("user", user_id)
    yield Command("ZADD", (keys.waiting, now_ms, user))
    rank = yield Command("ZRANK", (keys.waiting, user))
    return RoomAnswer("WAITING", 1 if rank is None else rank + 1)


def admit_seed(coupon_id: str, now_ms: int, batch: int = SEED_ADMISSION_BATCH) -> Flow[Admission]:
    """The seed's admission as written (S46-S49): read the first ``batch`` users, issue
    each with a fresh request id, remove the winners.

    ``subscribe(onNext, onError)``: only a success reaches onNext (the ZREM); a refusal
    (duplicate, sold out, not active: exceptions in the document) goes to onError, which
    logs, so the user stays at the front and is retried on the next tick, for ever.
    Nobody is told anything: the room's answer gave no request id to follow.
    """
    keys = CouponKeys(coupon_id)
    users = yield Command("ZRANGE", (keys.waiting, 0, batch - 1))
    told: dict[str, str] = {}
    for user in users:
        result = yield from ISSUE_FLOWS[Variant.SEED](
            IssueRequest(coupon_id, user, seed_admission_request(user, now_ms)), now_ms)
        told[user] = result.outcome.value
        if result.outcome is IssueOutcome.ISSUED:
            yield Command("ZREM", (keys.waiting, user))
    return Admission(told)


def seed_admission_request(user_id: str, now_ms: int) -> str:
    """The request id the seed's admission mints (``UUID.randomUUID()`` per user and
    tick): one per tick, so it is fresh each time, and reproducible in a run."""
    return f"room-{user_id}-{now_ms}"
