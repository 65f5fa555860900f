"""Plain records that cross the line between flows and the database.

They live apart from the SQLAlchemy models so that flows, which import no
I/O library, can build and read them.
"""

from dataclasses import dataclass
from enum import StrEnum


class CouponStatus(StrEnum):
    ACTIVE = "ACTIVE"
    USED = "USED"
    EXPIRED = "EXPIRED"


class Decision(StrEnum):
    PERSISTED = "PERSISTED"
    COMPENSATED = "COMPENSATED"


@dataclass(frozen=True)
class IssuedCoupon:
    """A coupon to store for one queue entry; the code is derived from the request."""

    code: str
    request_id: str
    user_id: str
    coupon_id: str
    ordinal: int
    issued_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class Decided:
    """What the database holds for one request: its decision, and the code if persisted."""

    decision: Decision
    code: str | None


@dataclass(frozen=True)
class CouponLedger:
    """Everything the database holds about one event, for the invariant checker."""

    coupons: tuple[tuple[str, str, int], ...]
    """(request id, user id, ordinal) of every stored coupon."""
    compensated: frozenset[str]
    """Request IDs decided as compensated."""


@dataclass(frozen=True)
class RedemptionRecord:
    """One application of a coupon to an order, as the database keeps it."""

    order_id: str
    code: str
    user_id: str
    applied_at_ms: int
    released_at_ms: int | None


@dataclass(frozen=True)
class HeldCoupon:
    """An issued coupon's owner and state: for the redemption invariants, and for a
    user's list of coupons."""

    code: str
    user_id: str
    status: CouponStatus
    order_id: str | None
    expires_at_ms: int
    coupon_id: str
    issued_at_ms: int


@dataclass(frozen=True)
class RedemptionLedger:
    coupons: tuple[HeldCoupon, ...]
    redemptions: tuple[RedemptionRecord, ...]
