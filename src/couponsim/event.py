"""The definition of one coupon event, as stored in ``coupon:info:{C}``.

Money is an integer in the currency's minor unit (KRW has none), never a
float, so discounts are exact.
"""

from dataclasses import asdict, dataclass
from enum import StrEnum

from couponsim.errors import InvalidEventConfig
from couponsim.ids import MAX_WHOLE_NUMBER, validate_id

MAX_NAME_LENGTH = 200


class DiscountKind(StrEnum):
    FIXED = "fixed"
    PERCENT = "percent"


@dataclass(frozen=True)
class CouponEvent:
    """A flash-sale coupon: how many, what it is worth, who may hold it, and when."""

    coupon_id: str
    stock: int
    name: str = ""
    discount_kind: DiscountKind = DiscountKind.FIXED
    discount_value: int = 10_000
    max_discount: int = 0
    """Cap of a percentage discount; 0 means no cap."""
    min_order: int = 0
    per_user_limit: int = 1
    validity_s: int = 7 * 24 * 3600
    """How long an issued coupon stays usable."""
    starts_at_ms: int = 0
    ends_at_ms: int = 0
    """0 means the event runs until it is ended by hand."""

    def __post_init__(self) -> None:
        validate_id("coupon", self.coupon_id)
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME_LENGTH:
            raise InvalidEventConfig(f"name must be text of at most {MAX_NAME_LENGTH} characters")
        for name in ("stock", "discount_value", "max_discount", "min_order", "validity_s",
                     "starts_at_ms", "ends_at_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value <= MAX_WHOLE_NUMBER:
                raise InvalidEventConfig(
                    f"{name} must be a whole number from 0 to 2**53-1, got {value!r}")
        if self.stock == 0:
            raise InvalidEventConfig("stock must be at least 1")
        if isinstance(self.per_user_limit, bool) or not isinstance(self.per_user_limit, int) \
                or not 1 <= self.per_user_limit <= 1_000:
            raise InvalidEventConfig(
                f"per_user_limit must be a whole number from 1 to 1000, got {self.per_user_limit!r}"
            )
        try:
            object.__setattr__(self, "discount_kind", DiscountKind(self.discount_kind))
        except ValueError:
            raise InvalidEventConfig(
                f"discount_kind must be one of {[k.value for k in DiscountKind]}, "
                f"got {self.discount_kind!r}"
            ) from None
        if self.discount_kind is DiscountKind.PERCENT and not 1 <= self.discount_value <= 100:
            raise InvalidEventConfig("a percentage discount must be 1 to 100")
        if self.ends_at_ms and self.ends_at_ms <= self.starts_at_ms:
            raise InvalidEventConfig("ends_at_ms must come after starts_at_ms")

    def to_fields(self) -> dict[str, str]:
        """The hash fields stored in ``coupon:info:{C}``."""
        return {name: str(value) for name, value in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "CouponEvent":
        """Rebuild an event from its stored hash (the inverse of :meth:`to_fields`)."""
        values: dict[str, object] = {}
        for name, value in fields.items():
            if name in ("coupon_id", "name"):
                values[name] = value
            elif name == "discount_kind":
                values[name] = DiscountKind(value)
            elif name in cls.__dataclass_fields__:
                values[name] = int(value)
        return cls(**values)  # type: ignore[arg-type]
