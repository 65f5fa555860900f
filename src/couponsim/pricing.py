"""Checkout rules for applying a coupon to an order: pure, exact, shared by the
seed flow (which judges in Python between its round trips) and the hardened
repository (which judges inside its compare-and-set transaction).

Money is an integer in the currency's minor unit; a percentage discount is
rounded down, so the shop never gives away a fraction it cannot pay.
"""

from dataclasses import dataclass
from enum import StrEnum

from couponsim.errors import InvalidInput
from couponsim.event import DiscountKind
from couponsim.ids import MAX_WHOLE_NUMBER, validate_id, validate_ms
from couponsim.records import CouponStatus


class ApplyOutcome(StrEnum):
    APPLIED = "APPLIED"
    UNKNOWN = "UNKNOWN"
    NOT_OWNED = "NOT_OWNED"
    ALREADY_USED = "ALREADY_USED"
    EXPIRED = "EXPIRED"
    BELOW_MINIMUM = "BELOW_MINIMUM"
    LOCKED = "LOCKED"


@dataclass(frozen=True)
class ApplyRequest:
    user_id: str
    order_id: str
    code: str
    amount: int
    """The order's amount before the discount, in minor units."""

    def __post_init__(self) -> None:
        validate_id("user", self.user_id)
        validate_id("order", self.order_id)
        validate_id("coupon code", self.code)
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) \
                or not 0 <= self.amount <= MAX_WHOLE_NUMBER:
            raise InvalidInput(f"amount must be whole minor units from 0 to 2**53-1, "
                               f"got {self.amount!r}")


@dataclass(frozen=True)
class ApplyResult:
    outcome: ApplyOutcome
    code: str
    order_id: str
    original: int = 0
    discount: int = 0
    final: int = 0

    @property
    def applied(self) -> bool:
        return self.outcome is ApplyOutcome.APPLIED


def refused(outcome: ApplyOutcome, request: ApplyRequest) -> ApplyResult:
    """A refusal: the order is charged in full."""
    return ApplyResult(outcome, request.code, request.order_id, request.amount, 0,
                       request.amount)


@dataclass(frozen=True)
class CouponView:
    """What the checkout needs to know of one issued coupon and its event's rules."""

    code: str
    user_id: str
    coupon_id: str
    status: CouponStatus
    order_id: str | None
    expires_at_ms: int
    discount_kind: DiscountKind
    discount_value: int
    max_discount: int
    min_order: int


def discount_for(view: CouponView, amount: int) -> int:
    """The discount on ``amount``: never more than the amount, capped where the rule says."""
    if view.discount_kind is DiscountKind.PERCENT:
        discount = amount * view.discount_value // 100
        if view.max_discount:
            discount = min(discount, view.max_discount)
    else:
        discount = view.discount_value
    return min(discount, amount)


def judge(view: CouponView | None, request: ApplyRequest, now_ms: int) -> ApplyResult:
    """Apply the checkout rules: the first refusal that holds, else the priced answer."""
    validate_ms("now_ms", now_ms)
    if view is None:
        return refused(ApplyOutcome.UNKNOWN, request)
    outcome = None
    if view.user_id != request.user_id:
        outcome = ApplyOutcome.NOT_OWNED
    elif view.status is CouponStatus.USED:
        outcome = ApplyOutcome.ALREADY_USED
    elif view.status is CouponStatus.EXPIRED or now_ms >= view.expires_at_ms:
        outcome = ApplyOutcome.EXPIRED
    elif request.amount < view.min_order:
        outcome = ApplyOutcome.BELOW_MINIMUM
    if outcome is not None:
        return refused(outcome, request)
    discount = discount_for(view, request.amount)
    return ApplyResult(ApplyOutcome.APPLIED, request.code, request.order_id, request.amount,
                       discount, request.amount - discount)
