"""Readings of the design document where it contradicts itself or says nothing
(docs/seed_trace.md).

Where two readings can both be executed, the seed variant offers both; the
default follows the code, or where the document shows nothing, the workbench's
own table. A scenario sets them in its ``[seed_options]`` section.
"""

from dataclasses import dataclass, fields
from typing import Literal, get_args

from couponsim.errors import InvalidChoice

CacheField = Literal["code", "coupon"]
UniqueKey = Literal["user_coupon", "none"]


@dataclass(frozen=True)
class SeedOptions:
    cache_field: CacheField = "code"
    """S26: the field of ``user:coupons:{U}``. ``code``: the coupon's code, which the
    redemption looks up (S51). ``coupon``: the key schema's ``{couponId: issueTime}``,
    under which no code is ever found and every apply answers NOT_OWNED."""

    unique_key: UniqueKey = "user_coupon"
    """S28: the user-coupon table's unique key, which the document never shows (no
    entity, no DDL). ``user_coupon``: the workbench's unique (user, coupon, ordinal);
    the seed consumer stores every coupon as the user's first, so a double click's
    second coupon makes the database refuse the whole ``saveAll``. ``none``: no such
    key, every row of a ``saveAll`` is inserted and a double click leaves the user
    two stored coupons.

    ``none`` is modelled by the repository numbering each row after the user's
    highest ordinal of the event, under the event's row lock, rather than by a
    second table without the key: one schema serves both variants and both
    readings, the key then never bites (which is all "no key" means for these
    rows), and the database's real rows still show the user holding two coupons,
    which is what the checker counts (the seed's duplicate check counts rows per
    user, never ordinals). Ordinals the flow picked itself (a hash of the
    request, say) could still collide, and one collision would refuse a batch
    the reading says must be stored."""

    def __post_init__(self) -> None:
        for item in fields(self):
            allowed: tuple[str, ...] = get_args(item.type)
            value = getattr(self, item.name)
            if value not in allowed:
                raise InvalidChoice(item.name, value, allowed)


DEFAULT = SeedOptions()
