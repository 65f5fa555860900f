"""The status of an issue request, as its user sees it.

Hardened requests keep theirs in ``coupon:request:{C}:{R}`` and announce
every change on the coupon's channel in the same script that makes it, so a
reader that subscribes first and reads second can never miss the final state.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from couponsim.effects import Command, Pipeline
from couponsim.flows import Flow
from couponsim.keys import CouponKeys, seed_status_key


class RequestState(StrEnum):
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class RequestStatus:
    request_id: str
    state: RequestState
    code: str = ""
    """The coupon code, once COMPLETED."""
    reason: str = ""
    """Why, once FAILED."""

    @property
    def final(self) -> bool:
        return self.state is not RequestState.PROCESSING

    def to_message(self) -> str:
        """The pub/sub message announcing this status."""
        return json.dumps({"request": self.request_id, "state": self.state.value,
                           "code": self.code, "reason": self.reason})

    @classmethod
    def from_message(cls, message: str) -> "RequestStatus":
        data = json.loads(message)
        return cls(data["request"], RequestState(data["state"]), data.get("code", ""),
                   data.get("reason", ""))


def still_issued(coupon_id: str, request_ids: Sequence[str]) -> Flow[list[bool]]:
    """Does each request hold the coupon the script issued to it? Its record has a status
    (a refusal's has only the outcome) and it is not FAILED (compensated), as
    :func:`read_status` would read it; one round trip for them all."""
    keys = CouponKeys(coupon_id)
    statuses = yield Pipeline(tuple(Command("HGET", (keys.request(request_id), "status"))
                                    for request_id in request_ids))
    return [status is not None and status != RequestState.FAILED.value for status in statuses]


def read_status(coupon_id: str, request_id: str) -> Flow[RequestStatus | None]:
    """The hardened request's status, or None for a request never seen (or long expired).

    A request refused at once (DUPLICATE, SOLD_OUT) has no queue entry: its
    status is FAILED from the start, with the refusal as the reason.
    """
    record = yield Command("HGETALL", (CouponKeys(coupon_id).request(request_id),))
    if not record:
        return None
    if "status" not in record:
        return RequestStatus(request_id, RequestState.FAILED, reason=record["outcome"])
    return RequestStatus(request_id, RequestState(record["status"]), record.get("code", ""),
                         record.get("reason", ""))


def read_seed_status(request_id: str) -> Flow[RequestStatus | None]:
    """The seed request's status (S30), or None once it expired or was never set."""
    raw = yield Command("GET", (seed_status_key(request_id),))
    return None if raw is None else parse_seed_status(request_id, raw)


def parse_seed_status(request_id: str, raw: str) -> RequestStatus:
    """The seed stores two shapes under one key: the issue API's plain ``PROCESSING``
    string (S16) and the consumer's status object (S24); both read as a status."""
    if raw in RequestState.__members__:
        return RequestStatus(request_id, RequestState(raw))
    return RequestStatus.from_message(raw)
