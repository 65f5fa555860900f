"""The first job: a flash crowd of issue requests against one coupon, then the
consumers drain the queue into the database and the checker judges the result.

Users arrive in order; some double-click, so their second request is in
flight together with the first. Up to ``concurrency`` requests are in flight
at once and a seeded random scheduler picks whose next round trip runs, so
the seed flow's check-then-act race shows up as it would on a network, and
the same seed replays the same run. Optionally the first consumer batch
crashes at a named point and a restarted consumer drains the rest. Issue #6
replaces this with the SimPy model; the command shape stays ``couponsim run``.
"""

import random
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass

from couponsim.consumers import ConsumerTotals, drain, drain_seed
from couponsim.drivers.interleave import run_interleaved
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InjectedCrash, InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.consume import (
    SEED_BATCH_SIZE,
    ConsumerConfig,
    CrashPoint,
    consume_batch,
    consume_seed_batch,
    load_event,
)
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest
from couponsim.flows.seed_options import DEFAULT, SeedOptions
from couponsim.verify import InvariantReport, check_invariants

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
    batch_size: int = 100
    """Queue entries per consumer batch (the seed's consumer takes 10, as written)."""
    consumer_crash: CrashPoint | None = None
    """Where the first consumer batch dies, if it does."""
    seed_options: SeedOptions = DEFAULT
    """The seed consumer's readings of the document (the hardened variant has none)."""

    def __post_init__(self) -> None:
        if self.users < 1 or self.stock < 1 or self.concurrency < 1 or self.batch_size < 1:
            raise InvalidInput("users, stock, concurrency and batch_size must each be at least 1")
        if not 0.0 <= self.double_click <= 1.0:
            raise InvalidInput(f"double_click is a share from 0 to 1, got {self.double_click}")
        object.__setattr__(self, "variant", Variant(self.variant))
        if self.consumer_crash is not None:
            object.__setattr__(self, "consumer_crash", CrashPoint(self.consumer_crash))


@dataclass(frozen=True)
class SpikeResult:
    config: SpikeConfig
    requests: int
    told: Counter[IssueOutcome]
    """What the users were answered, by outcome."""
    consumed: ConsumerTotals
    report: InvariantReport
    """What Redis and the database hold afterwards, judged against the invariants."""
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
    """Warm up, activate, fire every request, drain the queue, then check it all."""
    started = time.perf_counter()
    driver.run(lifecycle.purge(config.coupon_id, with_database=True))
    event = CouponEvent(config.coupon_id, stock=config.stock, name="spike",
                        starts_at_ms=START_MS)
    driver.run(lifecycle.open_event(event, config.variant))
    issue = ISSUE_FLOWS[config.variant]
    requests = requests_for(config)
    scheduler = random.Random(config.seed + 1)
    results = run_interleaved(
        (issue(request, START_MS + n) for n, request in enumerate(requests)),
        driver.execute, scheduler.randrange, config.concurrency,
    )
    answers = []
    for result in results:
        if isinstance(result, Exception):
            raise result
        answers.append(result.outcome)
    consumed = _consume(config, driver, START_MS + len(requests))
    report = driver.run(check_invariants(config.coupon_id, with_database=True))
    return SpikeResult(config, len(requests), Counter(answers), consumed, report,
                       time.perf_counter() - started)


def _consume(config: SpikeConfig, driver: SyncDriver, now_ms: int) -> ConsumerTotals:
    """Drain the queue; with a crash configured, the first batch dies there first."""
    if config.variant is Variant.SEED:
        if config.consumer_crash is not None:
            with suppress(InjectedCrash):
                driver.run(consume_seed_batch({}, now_ms, SEED_BATCH_SIZE, config.consumer_crash,
                                              config.seed_options))
        return drain_seed(driver, clock_ms=lambda: now_ms, options=config.seed_options)
    consumer = ConsumerConfig(batch_size=config.batch_size, claim_idle_ms=0)
    if config.consumer_crash is not None:
        event = driver.run(load_event(config.coupon_id))
        with suppress(InjectedCrash):
            driver.run(consume_batch(event, "crashing", now_ms, consumer, config.consumer_crash))
    return drain(driver, config.coupon_id, "restarted", consumer, clock_ms=lambda: now_ms)
