"""Issuing a coupon to a user: the seed flow and the hardened flow.

The seed flow takes six round trips (flag, duplicate check, decrement, push,
mark, status); a driver may run other flows between any two of them, which is
how one user's double click gets two coupons. The hardened flow is one script.
"""

import json
from dataclasses import dataclass
from enum import StrEnum

from couponsim.effects import Command, Script
from couponsim.errors import RequestIdConflict, UnknownCoupon
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


def issue(request: IssueRequest, now_ms: int) -> Flow[IssueResult]:
    """The hardened flow: one script decides, decrements, marks, enqueues and records."""
    validate_ms("now_ms", now_ms)
    keys = CouponKeys(request.coupon_id)
    outcome, remaining, ordinal = yield Script(
        "issue",
        (keys.info, keys.active, keys.stock, keys.holders, keys.queue,
         keys.request(request.request_id)),
        (request.request_id, request.user_id, request.coupon_id, now_ms, REQUEST_RECORD_TTL_S),
    )
    if outcome == "UNKNOWN":
        raise UnknownCoupon(request.coupon_id)
    if outcome == "CONFLICT":
        raise RequestIdConflict(request.request_id, request.user_id)
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
