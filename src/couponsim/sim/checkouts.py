"""Story 3 in the model: a winner applies the coupon to an order, perhaps twice at
once, and perhaps cancels the order later, which gives the coupon back."""

from collections.abc import Generator
from typing import Any

import simpy

from couponsim.flows import Variant
from couponsim.flows.redeem import apply_coupon, apply_coupon_seed, release_coupon
from couponsim.pricing import ApplyRequest
from couponsim.sim.records import CheckoutRecord, RequestRecord
from couponsim.sim.world import World


class Checkouts:
    def __init__(self, world: World) -> None:
        self.world = world
        self.env = world.env

    def start(self, record: RequestRecord) -> None:
        """The checkout of ``record``'s winner, who may or may not go on to pay."""
        self.env.process(self._checkout(record))

    def _checkout(self, record: RequestRecord) -> Generator[simpy.Event, Any, None]:
        spec = self.world.scenario.checkout
        rng = self.world.rng["checkout"]
        if rng.random() >= spec.share:
            return
        yield self.env.timeout(float(rng.exponential(spec.delay_s * 1000)))
        orders = [f"o-{record.user}"]
        if rng.random() < spec.double_submit_share:
            orders.append(f"o-{record.user}-2")
        cancels = rng.random() < spec.cancel_share
        applies = [self.env.process(self._apply(record, order)) for order in orders]
        results = yield self.env.all_of(applies)
        applied = [apply for apply in applies if results[apply].applied]
        if cancels and applied:
            yield self.env.timeout(float(rng.exponential(spec.cancel_after_s * 1000)))
            order = results[applied[0]].order_id
            checkout = CheckoutRecord(record.user, order, record.code, "release",
                                      self.env.now)
            self.world.run.checkouts.append(checkout)
            released = yield from self.world.store.flow(
                release_coupon(record.user, order, record.code, int(self.env.now)))
            checkout.outcome = "RELEASED" if released.released else "NOT_HELD"
            checkout.done_ms = self.env.now

    def _apply(self, record: RequestRecord, order: str) -> Generator[simpy.Event, Any, Any]:
        checkout = CheckoutRecord(record.user, order, record.code, "apply", self.env.now)
        self.world.run.checkouts.append(checkout)
        scenario = self.world.scenario
        request = ApplyRequest(record.user, order, record.code, scenario.checkout.amount)
        flow = (apply_coupon_seed(request, int(self.env.now))
                if scenario.variant is Variant.SEED
                else apply_coupon(request, int(self.env.now)))
        result = yield from self.world.store.flow(flow)
        checkout.outcome, checkout.done_ms = result.outcome.value, self.env.now
        return result
