"""Readings of the design document where it contradicts itself (docs/seed_trace.md).

Where the document's key schema and its code disagree and both readings can be
executed, the seed variant offers both; the default follows the code.
"""

from dataclasses import dataclass
from typing import Literal

from couponsim.errors import InvalidInput


@dataclass(frozen=True)
class SeedOptions:
    cache_field: Literal["code", "coupon"] = "code"
    """S26: the field of ``user:coupons:{U}``. ``code``: the coupon's code, which the
    redemption looks up (S51). ``coupon``: the key schema's ``{couponId: issueTime}``,
    under which no code is ever found and every apply answers NOT_OWNED."""

    def __post_init__(self) -> None:
        if self.cache_field not in ("code", "coupon"):
            raise InvalidInput(f"cache_field must be 'code' or 'coupon', got {self.cache_field!r}")


DEFAULT = SeedOptions()
