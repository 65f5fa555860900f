"""The first job: a flash crowd of issue requests against one coupon.

Users arrive in order; some double-click, so their second request is in
flight together with the first. Up to ``concurrency`` requests are in flight
at once and a seeded random scheduler picks whose next round trip runs, so
the seed flow's check-then-act race shows up as it would on a network, and
the same seed replays the same run. Issue #6 replaces this with the SimPy
model; the command shape stays ``couponsim run ...``.
"""

import random
import time
from collections import Counter
from dataclasses import dataclass

from couponsim.drivers.interleave import run_interleaved
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest
from couponsim.verify import IssuanceReport, check_issuance

START_MS = 1_700_000_000_000
"""Virtual time of the event start; requests are stamped 1 ms apart after it."""


@dataclass(frozen=True)
class SpikeConfig:
    users: int = 5_000
    stock: int = 1_000
    double_click: float = 0.05
    """Share of users who send a second request while the first is in flight."""
    concurrency: int = 64
    variant: Variant = Variant.HARDENED
    seed: int = 1
    coupon_id: str = "spike"

    def __post_init__(self) -> None:
        if self.users < 1 or self.stock < 1 or self.concurrency < 1:
            raise InvalidInput("users, stock and concurrency must each be at least 1")
        if not 0.0 <= self.double_click <= 1.0:
            raise InvalidInput(f"double_click is a share from 0 to 1, got {self.double_click}")
        object.__setattr__(self, "variant", Variant(self.variant))


@dataclass(frozen=True)
class SpikeResult:
    config: SpikeConfig
    requests: int
    told: Counter[IssueOutcome]
    """What the users were answered, by outcome."""
    report: IssuanceReport
    """What Redis holds afterwards, judged against the invariants."""
    wall_s: float


def requests_for(config: SpikeConfig) -> list[IssueRequest]:
    """Every request in arrival order; a double click follows its first click directly."""
    rng = random.Random(config.seed)
    requests = []
    for n in range(config.users):
        user = f"u{n}"
        clicks = 2 if rng.random() < config.double_click else 1
        requests += [IssueRequest(config.coupon_id, user, f"r{n}-{click}")
                     for click in range(clicks)]
    return requests


def run_spike(config: SpikeConfig, driver: SyncDriver) -> SpikeResult:
    """Warm up, activate, fire every request, then check what Redis holds."""
    started = time.perf_counter()
    driver.run(lifecycle.purge(config.coupon_id))
    event = CouponEvent(config.coupon_id, stock=config.stock, name="spike",
                        starts_at_ms=START_MS)
    if config.variant is Variant.SEED:
        driver.run(lifecycle.warm_up_seed(event))
        driver.run(lifecycle.activate_seed(config.coupon_id))
    else:
        driver.run(lifecycle.warm_up(event))
        driver.run(lifecycle.activate(config.coupon_id))
    issue = ISSUE_FLOWS[config.variant]
    requests = requests_for(config)
    scheduler = random.Random(config.seed + 1)
    results = run_interleaved(
        (issue(request, START_MS + n) for n, request in enumerate(requests)),
        driver.execute, scheduler.randrange, config.concurrency,
    )
    report = driver.run(check_issuance(config.coupon_id))
    return SpikeResult(config, len(requests), Counter(r.outcome for r in results), report,
                       time.perf_counter() - started)
