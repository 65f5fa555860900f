"""The invariant checker: what Redis itself holds, never what the code counted.

Modelled on Jepsen's checkers: a duplicate always fails (unique-ids), the
number issued must fit the stock (counter), and stock left plus coupons
recorded must equal the initial stock (conservation). The record of what was
issued is the issue queue: the hardened per-coupon stream and the seed's
global list, whichever the run used. It is a flow, so any driver can run it.
"""

import json
from collections import Counter
from dataclasses import dataclass, field

from couponsim.effects import Command
from couponsim.errors import UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.flows import Flow
from couponsim.keys import SEED_ISSUE_QUEUE, CouponKeys


@dataclass(frozen=True)
class Check:
    """One invariant, the figure it was judged on, and the verdict."""

    name: str
    observed: int
    ok: bool


@dataclass(frozen=True)
class IssuanceReport:
    coupon_id: str
    initial_stock: int
    per_user_limit: int
    stock_left: int
    issued: int
    """Coupons recorded in the issue queue (stream entries or seed list items)."""
    coupons_per_user: Counter[str] = field(repr=False)

    @property
    def oversold(self) -> int:
        return max(0, self.issued - self.initial_stock)

    @property
    def duplicates(self) -> dict[str, int]:
        """Users holding more coupons than the event allows, with how many they hold."""
        return {user: n for user, n in self.coupons_per_user.items()
                if n > self.per_user_limit}

    @property
    def conservation_gap(self) -> int:
        """stock left + issued - initial stock: 0 when no unit was created or lost."""
        return self.stock_left + self.issued - self.initial_stock

    @property
    def checks(self) -> list[Check]:
        return [
            Check("no oversell (coupons issued beyond the stock)", self.oversold,
                  self.oversold == 0),
            Check("stock never below zero (stock left)", self.stock_left, self.stock_left >= 0),
            Check("no duplicate (users over their limit)", len(self.duplicates),
                  not self.duplicates),
            Check("conservation (stock left + issued - initial)", self.conservation_gap,
                  self.conservation_gap == 0),
        ]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def check_issuance(coupon_id: str) -> Flow[IssuanceReport]:
    """Read the coupon's state from Redis and judge the issuance invariants."""
    keys = CouponKeys(coupon_id)
    info = yield Command("HGETALL", (keys.info,))
    if not info:
        raise UnknownCoupon(coupon_id)
    event = CouponEvent.from_fields(info)
    stock_left = int((yield Command("GET", (keys.stock,))) or 0)
    holders: Counter[str] = Counter()
    for _entry_id, entry in (yield Command("XRANGE", (keys.queue, "-", "+"))):
        holders[entry["user"]] += 1
    for raw in (yield Command("LRANGE", (SEED_ISSUE_QUEUE, 0, -1))):
        entry = json.loads(raw)
        if entry["coupon"] == coupon_id:
            holders[entry["user"]] += 1
    return IssuanceReport(
        coupon_id=coupon_id,
        initial_stock=event.stock,
        per_user_limit=event.per_user_limit,
        stock_left=stock_left,
        issued=sum(holders.values()),
        coupons_per_user=holders,
    )
