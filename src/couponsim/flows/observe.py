"""What operators watch of a running event: the waiting room's size and the issue
queue's backlog (for ``/metrics``), read in one round trip."""

from dataclasses import dataclass

from couponsim.effects import Command, Pipeline
from couponsim.flows import Flow
from couponsim.keys import ISSUE_GROUP, CouponKeys


@dataclass(frozen=True)
class Backlog:
    waiting: int
    """Users in the waiting room."""
    undelivered: int
    """Issue queue entries no consumer has read yet (the group's lag)."""
    pending: int
    """Entries read by a consumer and not yet acknowledged."""


def backlog(coupon_id: str) -> Flow[Backlog]:
    keys = CouponKeys(coupon_id)
    waiting, groups = yield Pipeline((Command("ZCARD", (keys.waiting,)),
                                      Command("XINFO GROUPS", (keys.queue,))))
    group = next((g for g in groups if g["name"] == ISSUE_GROUP), None) \
        if isinstance(groups, list) else None
    if group is None:   # an event warmed up by the seed's flow has no stream
        return Backlog(waiting, 0, 0)
    return Backlog(waiting, group.get("lag") or 0, group["pending"])
