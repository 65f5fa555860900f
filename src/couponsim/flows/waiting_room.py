"""The virtual waiting room: where requests go when the gateway will not take them now.

Per coupon, a sorted set scored by arrival (ties by user id), a state per user
and the request id their admission will issue with. An admission job takes the
next users out atomically, runs their issue flows and tells each the outcome;
on sell-out it drains the room at once and closes it. The seed's admission, as
written, only removes users who got a coupon: the rest stay and are retried
every second for ever, and nobody is told.
"""

from dataclasses import dataclass

from couponsim.effects import Command, Pipeline, Script
from couponsim.errors import InvalidInput, UnknownCoupon
from couponsim.flows import Flow, Variant
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest, IssueResult
from couponsim.ids import validate_id, validate_ms
from couponsim.keys import CouponKeys

SEED_ADMISSION_BATCH = 100
"""The seed admits 100 users a second, as written."""
ADMISSIONS_REMEMBERED = 10
"""Batches kept to measure the admission rate."""
PRE_QUEUE_SPREAD = 1_000_000


@dataclass(frozen=True)
class RoomAnswer:
    state: str
    """WAITING, SOLD_OUT, or the outcome the user was already told."""
    position: int = 0
    size: int = 0


@dataclass(frozen=True)
class RoomStatus:
    state: str | None
    """None for a user who never joined."""
    position: int = 0
    size: int = 0
    eta_s: float | None = None
    """Estimated wait from the measured admission rate; None until two batches were seen."""
    admission_rate: float | None = None
    """Users admitted per second, measured."""


@dataclass(frozen=True)
class Admission:
    outcomes: dict[str, IssueOutcome]
    """What each admitted user was told."""
    drained: int = 0
    """Waiting users told their outcome when the room closed (SOLD_OUT, or ISSUED
    for one who already holds a coupon)."""


def join_room(coupon_id: str, user_id: str, request_id: str, now_ms: int,
              shuffle: int = 0) -> Flow[RoomAnswer]:
    """Wait in line; ``shuffle`` (0..999999, drawn by the caller) orders the pre-queue."""
    validate_ms("now_ms", now_ms)
    if not 0 <= shuffle < PRE_QUEUE_SPREAD:
        raise InvalidInput(f"shuffle must be 0 to {PRE_QUEUE_SPREAD - 1}, got {shuffle}")
    keys = CouponKeys(coupon_id)
    state, position, size = yield Script(
        "room_join", (keys.waiting, keys.room, keys.room_requests, keys.info),
        (validate_id("user", user_id), validate_id("request", request_id), now_ms, shuffle))
    if state == "UNKNOWN":
        raise UnknownCoupon(coupon_id)
    return RoomAnswer(state, position, size)


def leave_room(coupon_id: str, user_id: str) -> Flow[bool]:
    keys = CouponKeys(coupon_id)
    left = yield Script("room_leave", (keys.waiting, keys.room), (validate_id("user", user_id),))
    return bool(left)


def room_status(coupon_id: str, user_id: str, now_ms: int) -> Flow[RoomStatus]:
    """Where the user stands, and how long the measured admission rate says it will take."""
    keys = CouponKeys(coupon_id)
    rank, size, state, batches = yield Pipeline((
        Command("ZRANK", (keys.waiting, validate_id("user", user_id))),
        Command("ZCARD", (keys.waiting,)),
        Command("HGET", (keys.room, user_id)),
        Command("LRANGE", (keys.admissions, 0, -1)),
    ), atomic=True)
    rate = admission_rate(batches, validate_ms("now_ms", now_ms))
    position = 0 if rank is None else rank + 1
    eta = None if rate is None or not position else position / rate
    return RoomStatus(state, position, size, eta, rate)


def admission_rate(batches: list[str], now_ms: int) -> float | None:
    """Users per second over the remembered batches (``at_ms:count``, newest first).

    The oldest batch marks the start of the span, so its users are not counted;
    a pause in admissions (the breaker open) stretches the span and the rate falls.
    """
    parsed = [(int(at), int(count)) for at, count in (b.split(":") for b in batches)]
    if len(parsed) < 2:
        return None
    oldest_at = parsed[-1][0]
    span_ms = max(now_ms, parsed[0][0]) - oldest_at
    return 1000 * sum(count for _at, count in parsed[:-1]) / span_ms if span_ms > 0 else None


def admit(coupon_id: str, batch: int, now_ms: int) -> Flow[Admission]:
    """The hardened admission: take the next users exactly once, issue, tell, close if sold out."""
    validate_ms("now_ms", now_ms)
    keys = CouponKeys(coupon_id)
    taken = yield Script("room_admit",
                         (keys.waiting, keys.room, keys.room_requests, keys.admissions),
                         (batch, now_ms, ADMISSIONS_REMEMBERED))
    outcomes: dict[str, IssueOutcome] = {}
    sold_out = False
    for user, request_id in zip(taken[::2], taken[1::2], strict=True):
        result: IssueResult = yield from ISSUE_FLOWS[Variant.HARDENED](
            IssueRequest(coupon_id, user, request_id or f"room-{user}"), now_ms)
        outcomes[user] = result.outcome
        sold_out |= result.outcome is IssueOutcome.SOLD_OUT or result.remaining == 0
    if not outcomes:
        return Admission({})
    pairs = [item for user, outcome in outcomes.items() for item in (user, outcome.value)]
    drained = yield Script("room_settle", (keys.waiting, keys.room, keys.holders),
                           (keys.room_channel, 1 if sold_out else 0, *pairs))
    return Admission(outcomes, drained)


def admit_seed(coupon_id: str, now_ms: int, batch: int = SEED_ADMISSION_BATCH) -> Flow[Admission]:
    """The seed's admission as written: retry the first ``batch`` users, remove the winners.

    A user refused (duplicate, sold out) stays in the set and is retried on the
    next tick, for ever; nobody is told anything.
    """
    keys = CouponKeys(coupon_id)
    users = yield Command("ZRANGE", (keys.waiting, 0, batch - 1))
    told: dict[str, IssueOutcome] = {}
    for user in users:
        request_id = yield Command("HGET", (keys.room_requests, user))
        result = yield from ISSUE_FLOWS[Variant.SEED](
            IssueRequest(coupon_id, user, request_id or f"room-{user}"), now_ms)
        told[user] = result.outcome
        if result.outcome is IssueOutcome.ISSUED:
            yield Command("ZREM", (keys.waiting, user))
    return Admission(told)
