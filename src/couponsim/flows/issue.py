"""Issuing a coupon to a user: the seed flow and the hardened flow.

The seed flow takes six round trips (flag, duplicate check, decrement, push,
mark, status); a driver may run other flows between any two of them, which is
how one user's double click gets two coupons. The hardened flow is one script,
which takes a batch: :func:`issue_batch` sends many requests in one call.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from couponsim.effects import BatchShape, Command, Script
from couponsim.errors import InvalidInput, RequestIdConflict, UnknownCoupon
from couponsim.flows import Flow, Variant
from couponsim.flows.status import RequestState
from couponsim.ids import validate_id, validate_ms
from couponsim.keys import SEED_ISSUE_QUEUE, CouponKeys, seed_status_key

SEED_PROCESSING_TTL_S = 600
"""The seed's PROCESSING status lives 10 minutes, as written (S16)."""

REQUEST_RECORD_TTL_S = 24 * 3600
"""How long a hardened request's answer is kept for replays and status reads.
Long enough to outlive the issue queue's drain by far (#3 keeps it alive while
the request is in flight)."""


class IssueOutcome(StrEnum):
    ISSUED = "ISSUED"
    NOT_ACTIVE = "NOT_ACTIVE"
    DUPLICATE = "DUPLICATE"
    SOLD_OUT = "SOLD_OUT"
    WAITERS = "WAITERS"
    """Only for a call asked to go behind the room's line: someone waits there, so the
    script decided nothing (the gateway queues the user; no one else is told this)."""


@dataclass(frozen=True)
class IssueRequest:
    coupon_id: str
    user_id: str
    request_id: str

    def __post_init__(self) -> None:
        validate_id("coupon", self.coupon_id)
        validate_id("user", self.user_id)
        validate_id("request", self.request_id)


@dataclass(frozen=True)
class IssueResult:
    outcome: IssueOutcome
    request_id: str
    remaining: int | None = None
    """Stock left after this request, when the flow looked at it."""
    ordinal: int = 0
    """For ISSUED: which of this user's coupons of the event it is (1 for the first)."""


ISSUE_SHAPE = BatchShape(shared_keys=6, shared_args=2, keys_each=1, args_each=4, reply_each=3)
"""lua/issue.lua's layout: the event's five keys and the room's line, then each request's
record; the coupon and the records' lifetime, then each request's id, user, time and
whether it goes behind the line. The flag is the request's own, not the batch's, so a
driver merges the gateway's presses (behind) with the admission's (not) into one call."""

IssueCall = tuple[IssueRequest, int, bool]
"""A request with the time it was made (ms on the caller's clock), and whether it is to
go behind anyone waiting in the room (answered WAITERS, deciding nothing, if so)."""
IssueAnswer = IssueResult | UnknownCoupon | RequestIdConflict
"""One request's answer in a batch: its result, or the refusal :func:`issue` raises."""


def issue(request: IssueRequest, now_ms: int,
          behind_waiters: bool = False) -> Flow[IssueResult]:
    """The hardened flow: one script decides, decrements, marks, enqueues and records.
    ``behind_waiters``: first answer WAITERS, deciding nothing, if anyone waits in the
    room (the gateway's check, in the same call)."""
    (answer,) = yield from issue_batch([(request, now_ms, behind_waiters)])
    if isinstance(answer, Exception):
        raise answer
    return answer


def issue_batch(calls: Sequence[IssueCall]) -> Flow[list[IssueAnswer]]:
    """Many requests for one coupon in one script call, decided in their order exactly
    as one call each would decide them; one answer per request, in order."""
    if not calls:
        return []
    coupon_id = calls[0][0].coupon_id
    if any(request.coupon_id != coupon_id for request, _now, _behind in calls):
        raise InvalidInput("a batch of issue requests is for one coupon")
    for _request, now_ms, _behind in calls:
        validate_ms("now_ms", now_ms)
    keys = CouponKeys(coupon_id)
    replies = yield Script(
        "issue",
        (keys.info, keys.active, keys.stock, keys.holders, keys.queue, keys.waiting,
         *(keys.request(request.request_id) for request, _now, _behind in calls)),
        (coupon_id, REQUEST_RECORD_TTL_S,
         *(part for request, now_ms, behind in calls
           for part in (request.request_id, request.user_id, now_ms, int(behind)))),
        ISSUE_SHAPE,
    )
    return [_answer(request, *replies[3 * n:3 * n + 3])
            for n, (request, _now, _behind) in enumerate(calls)]


def _answer(request: IssueRequest, outcome: str, remaining: int, ordinal: int) -> IssueAnswer:
    if outcome == "UNKNOWN":
        return UnknownCoupon(request.coupon_id)
    if outcome == "CONFLICT":
        return RequestIdConflict(request.request_id, request.user_id)
    return IssueResult(IssueOutcome(outcome), request.request_id,
                       None if remaining < 0 else remaining, ordinal)


def issue_seed(request: IssueRequest, now_ms: int) -> Flow[IssueResult]:
    """The seed flow as written (docs/seed_trace.md S11-S17): check, then act, one round
    trip at a time. The status is set last, after the push: a consumer quick enough to
    complete the request first has its COMPLETED overwritten by this PROCESSING."""
    validate_ms("now_ms", now_ms)
    keys = CouponKeys(request.coupon_id)
    state = yield Command("GET", (keys.active,))
    if state is None:
        raise UnknownCoupon(request.coupon_id)
    if state != "active":
        return IssueResult(IssueOutcome.NOT_ACTIVE, request.request_id)
    if (yield Command("SISMEMBER", (keys.issued, request.user_id))):
        return IssueResult(IssueOutcome.DUPLICATE, request.request_id)
    remaining = yield Script("seed_decrement", (keys.stock,))
    if remaining < 0:
        return IssueResult(IssueOutcome.SOLD_OUT, request.request_id, 0)
    entry = {"request": request.request_id, "user": request.user_id,
             "coupon": request.coupon_id, "issued_ms": now_ms}
    yield Command("RPUSH", (SEED_ISSUE_QUEUE, json.dumps(entry)))
    yield Command("SADD", (keys.issued, request.user_id))
    yield Command("SET", (seed_status_key(request.request_id), RequestState.PROCESSING.value,
                          "EX", SEED_PROCESSING_TTL_S))
    return IssueResult(IssueOutcome.ISSUED, request.request_id, remaining, 1)


ISSUE_FLOWS = {Variant.SEED: issue_seed, Variant.HARDENED: issue}
