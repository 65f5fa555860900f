"""Story 3 at checkout, as a job: coupons issued to users, then several orders apply
each coupon at once, some orders are cancelled (and the cancel retried at once),
the coupons given back are applied again, and late users check out after their
coupon expired. The checker then judges what the database holds.

Like the spike, requests run interleaved one round trip at a time in a seeded
order, so the same seed replays the same run. A database write slower than the
checkout lock's lifetime is modelled as that lock's TTL running out once at a
random point among each coupon's checkouts (``lock_expiry``): the seed flow then
lets a second order use the coupon, the hardened one does not.
"""

import random
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from couponsim.consumers import drain, drain_seed
from couponsim.drivers.interleave import run_interleaved
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows import Flow, Variant, lifecycle
from couponsim.flows.issue import ISSUE_FLOWS, IssueRequest
from couponsim.flows.redeem import APPLY_FLOWS, lock_expires, release_coupon
from couponsim.pricing import ApplyRequest, ApplyResult
from couponsim.verify import InvariantReport, check_invariants

START_MS = 1_700_000_000_000
"""When the coupons are issued; checkouts follow a millisecond later."""
VALIDITY_S = 3_600
"""How long an issued coupon can be used: late users come after it."""
NOT_HELD = "NOT_HELD"
"""A cancel's outcome when the order no longer held the coupon (a retried cancel)."""


@dataclass(frozen=True)
class CheckoutConfig:
    users: int = 200
    orders_per_coupon: int = 3
    """Orders that apply one coupon at the same time (tabs, retries, a shared account)."""
    cancel_share: float = 0.3
    """Share of the orders that got a discount and are then cancelled; every cancel
    is sent twice at once, as a retrying client does."""
    late_share: float = 0.2
    """Share of users who come to checkout only after their coupon expired."""
    lock_expiry: bool = True
    """The checkout lock's TTL runs out once among each coupon's checkouts."""
    variant: Variant = Variant.HARDENED
    seed: int = 1
    concurrency: int = 32
    """Requests in flight at once."""
    coupon_id: str = "checkout"
    amount: int = 30_000
    """Every order's total, before the discount."""

    def __post_init__(self) -> None:
        if min(self.users, self.orders_per_coupon, self.concurrency, self.amount) < 1:
            raise InvalidInput("users, orders_per_coupon, concurrency and amount must each "
                               "be at least 1")
        for name in ("cancel_share", "late_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInput(f"{name} is a share from 0 to 1, got {getattr(self, name)}")
        object.__setattr__(self, "variant", Variant(self.variant))


@dataclass(frozen=True)
class CheckoutResult:
    config: CheckoutConfig
    attempts: pd.DataFrame
    """One row per request: phase (apply, cancel, apply again, after expiry), user,
    order and outcome (an ApplyOutcome, or RELEASED / NOT_HELD for a cancel)."""
    report: InvariantReport
    """What Redis and the database hold afterwards, judged against the invariants."""
    wall_s: float


def run_checkout(config: CheckoutConfig, driver: SyncDriver) -> CheckoutResult:
    """Issue one coupon per user, run the four phases of checkout, then check it all."""
    if driver.repository is None:
        raise InvalidInput("checkout needs a database: give the driver a repository")
    started = time.perf_counter()
    rng = random.Random(config.seed)
    codes = _issue(config, driver)
    users = sorted(codes)
    late = set(rng.sample(users, round(config.late_share * len(users))))
    rows: list[tuple[str, str, str, str]] = []

    def interleave(flows: list[Flow[Any]]) -> list[Any]:
        results = run_interleaved(flows, driver.execute, rng.randrange, config.concurrency)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def apply(phase: str, requests: list[ApplyRequest], now_ms: int,
              expiring: bool = False) -> list[ApplyRequest]:
        """Apply every request at once; returns those that got the discount."""
        flows: list[Flow[Any]] = []
        for n, request in enumerate(requests):
            flows.append(APPLY_FLOWS[config.variant](request, now_ms))
            if expiring and (n + 1 == len(requests) or requests[n + 1].code != request.code):
                # in flight with the code's orders
                flows.append(lock_expires(request.code, config.variant))
        # The lock's expiry returns None; every apply returns its result.
        results: list[ApplyResult] = [r for r in interleave(flows) if r is not None]
        rows.extend((phase, q.user_id, q.order_id, r.outcome.value)
                    for q, r in zip(requests, results, strict=True))
        return [q for q, r in zip(requests, results, strict=True) if r.applied]

    now = START_MS + 1
    applied = apply("apply", [ApplyRequest(user, f"{user}-o{k}", codes[user], config.amount)
                              for user in users if user not in late
                              for k in range(config.orders_per_coupon)],
                    now, expiring=config.lock_expiry)
    cancelled = [q for q in rng.sample(applied, round(config.cancel_share * len(applied)))
                 for _twice in range(2)]
    released = interleave([release_coupon(q.user_id, q.order_id, q.code, now + 1)
                           for q in cancelled])
    rows.extend(("cancel", q.user_id, q.order_id, "RELEASED" if r.released else NOT_HELD)
                for q, r in zip(cancelled, released, strict=True))
    apply("apply again", [ApplyRequest(q.user_id, f"{q.user_id}-again", q.code, config.amount)
                          for q in cancelled[::2]], now + 2)
    apply("after expiry", [ApplyRequest(user, f"{user}-late", codes[user], config.amount)
                           for user in sorted(late)], START_MS + VALIDITY_S * 1000)
    report = driver.run(check_invariants(config.coupon_id, with_database=True))
    attempts = pd.DataFrame(rows, columns=["phase", "user", "order", "outcome"])
    return CheckoutResult(config, attempts, report, time.perf_counter() - started)


def _issue(config: CheckoutConfig, driver: SyncDriver) -> dict[str, str]:
    """A fresh event with one coupon per user, issued and stored: user -> code."""
    driver.run(lifecycle.purge(config.coupon_id, with_database=True))
    event = CouponEvent(config.coupon_id, stock=config.users, name="checkout",
                        validity_s=VALIDITY_S, starts_at_ms=START_MS)
    driver.run(lifecycle.open_event(event, config.variant))
    issue = ISSUE_FLOWS[config.variant]
    for n in range(config.users):
        driver.run(issue(IssueRequest(config.coupon_id, f"u{n}", f"r{n}"), START_MS))
    if config.variant is Variant.SEED:
        drain_seed(driver, clock_ms=lambda: START_MS)
    else:
        drain(driver, config.coupon_id, "checkout", clock_ms=lambda: START_MS)
    assert driver.repository is not None
    return {coupon.user_id: coupon.code
            for coupon in driver.repository.coupons_of_event(config.coupon_id)}
