"""The bodies the API reads and writes, named as the design document's clients name
them: Jackson's default naming of its Java classes, camelCase (``couponId``,
``requestId``, ``queuePosition``...). A body may also spell a field in snake_case,
as earlier versions of this service did; each model's description says so.

Input is strict: a number is a JSON number (not ``true``, not ``"5"``), a string is
a JSON string, and unknown fields are refused.
"""

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from couponsim.event import DiscountKind
from couponsim.ids import MAX_WHOLE_NUMBER

SNAKE_CASE_TOO = ("Field names are camelCase, as the design document's clients send them; "
                  "the snake_case spelling of each (e.g. coupon_id) is accepted as well.")


def _say_snake_case_too(schema: dict[str, JsonValue]) -> None:
    schema["description"] = f"{schema.get('description', '')}\n\n{SNAKE_CASE_TOO}".strip()


class _Body(BaseModel):
    """A request body: camelCase or snake_case names, strict types, nothing extra."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel,
                              validate_by_name=True, validate_by_alias=True,
                              json_schema_extra=_say_snake_case_too)


class _Answer(BaseModel):
    """A response body, written with camelCase names."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True,
                              validate_by_name=True)


class IssueBody(_Body):
    """The document's ``CouponIssueRequest``."""

    coupon_id: str = Field(min_length=1, max_length=64)


class IssueAccepted(_Answer):
    """The document's ``CouponIssueResponse``."""

    request_id: str
    status: Literal["PROCESSING", "QUEUED"]
    message: str
    queue_position: int | None = None
    """Place in the waiting room (QUEUED only)."""
    room_state: str | None = None
    """In the room: WAITING, ADMITTED, or ISSUED (the coupon came from an earlier click)."""
    path: str
    """How the gateway handled the request (direct, or why it was queued)."""


class RoomView(_Answer):
    state: str | None
    queue_position: int
    queue_size: int
    estimated_wait_time: float | None
    """Seconds, from the measured admission rate; null until it is measured."""
    admission_rate: float | None
    request_id: str | None
    status_url: str | None


class HeldCouponView(_Answer):
    coupon_code: str
    coupon_id: str
    status: str
    """ACTIVE, USED (on ``orderId``) or EXPIRED."""
    order_id: str | None
    issued_at_ms: int
    expires_at_ms: int


class ApplyBody(_Body):
    """The document's ``CouponApplyRequest``, with the order's amount, which the document
    reads from its order service (snake_case spellings: ``code``, ``amount``)."""

    coupon_code: str = Field(min_length=1, max_length=64,
                             validation_alias=AliasChoices("couponCode", "code"))
    original_amount: int = Field(ge=0, le=MAX_WHOLE_NUMBER,
                                 validation_alias=AliasChoices("originalAmount", "amount"))


class ApplyAnswer(_Answer):
    """The document's ``OrderResponse``."""

    outcome: str
    order_id: str
    original_amount: int
    discount_amount: int
    final_amount: int
    applied_coupon: str


class CancelBody(_Body):
    """(Also spelled ``code``, as earlier.)"""

    coupon_code: str = Field(min_length=1, max_length=64,
                             validation_alias=AliasChoices("couponCode", "code"))


class CancelAnswer(_Answer):
    released: bool
    status: str | None


class EventBody(_Body):
    coupon_id: str = Field(min_length=1, max_length=64)
    stock: int = Field(ge=1)
    name: str = ""
    discount_kind: DiscountKind = Field(DiscountKind.FIXED, strict=False)
    """(Lax: FastAPI validates the decoded JSON, whose enum values are strings.)"""
    discount_value: int = 10_000
    max_discount: int = 0
    min_order: int = 0
    per_user_limit: int = 1
    validity_s: int = 7 * 24 * 3600
    starts_at_ms: int = 0
    ends_at_ms: int = 0


class WarmupAnswer(_Answer):
    coupon_id: str
    outcome: str
