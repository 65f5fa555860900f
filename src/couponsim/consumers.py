"""Consumers in wall time: the loops around the batch flows, for threads and the CLI.

A consumer runs batches until told to stop; between batches it waits (the
seed polls every 50 ms, the hardened one can block in XREADGROUP). A
database that does not answer makes it pause and try again, never exit: its
entries stay pending and come back to it or to another consumer.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from couponsim.codes import SIMULATION_CODES, CouponCodes
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.errors import DatabaseUnavailable, PersistenceError, RedisUnavailable
from couponsim.event import CouponEvent
from couponsim.flows.consume import (
    SEED_BATCH_SIZE,
    BatchReport,
    ConsumerConfig,
    CrashPoint,
    consume_batch,
    consume_seed_batch,
    load_event,
)
from couponsim.flows.seed_options import DEFAULT, SeedOptions

SEED_POLL_S = 0.05
"""The seed consumer's schedule: every 50 ms."""

LIVE = ConsumerConfig(block_ms=100)
"""A long-running consumer: waits in XREADGROUP for new entries."""

RESTARTED = ConsumerConfig(claim_idle_ms=0)
"""A consumer draining after a crash: everything pending is reclaimed at once."""


@dataclass
class ConsumerTotals:
    """What one consumer did, batch by batch summed."""

    batches: int = 0
    read: int = 0
    persisted: int = 0
    compensated: int = 0
    dropped: int = 0
    outages: int = 0
    """Batches abandoned because Redis or the database failed."""
    reports: list[BatchReport] = field(default_factory=list, repr=False)

    def add(self, report: BatchReport) -> None:
        self.batches += 1
        self.read += report.read
        self.persisted += report.persisted
        self.compensated += report.compensated
        self.dropped += report.dropped
        self.reports.append(report)


def run_consumer(driver: SyncDriver, coupon_id: str, name: str, stop: threading.Event,
                 config: ConsumerConfig = LIVE,
                 clock_ms: Callable[[], int] = wall_clock_ms,
                 outage_pause_s: float = 0.5,
                 totals: ConsumerTotals | None = None,
                 codes: CouponCodes = SIMULATION_CODES) -> ConsumerTotals:
    """Run the hardened consumer ``name`` on one coupon until ``stop`` is set.

    A Redis or database that fails makes it pause and start over; what it held
    stays pending and comes back. An unknown coupon or a bug ends it. ``totals``,
    when given, is summed into as it goes, so a service's health can read it live.
    ``codes``: the deployment's, in a service's worker.
    """
    event: CouponEvent | None = None
    totals = ConsumerTotals() if totals is None else totals
    while not stop.is_set():
        try:
            if event is None:
                event = driver.run(load_event(coupon_id))
            report = driver.run(consume_batch(event, name, clock_ms(), config, codes=codes))
        except (DatabaseUnavailable, RedisUnavailable, PersistenceError):
            totals.outages += 1
            stop.wait(outage_pause_s)
            continue
        totals.add(report)
        if report.read == 0 and config.block_ms is None:
            stop.wait(SEED_POLL_S)
    return totals


def run_seed_consumer(driver: SyncDriver, stop: threading.Event,
                      batch_size: int = SEED_BATCH_SIZE,
                      clock_ms: Callable[[], int] = wall_clock_ms,
                      options: SeedOptions = DEFAULT) -> ConsumerTotals:
    """Run the seed consumer until ``stop`` is set: one batch, then 50 ms from its end,
    busy or not (``@Scheduled(fixedDelay = 50)``, docs/seed_trace.md S19)."""
    events: dict[str, CouponEvent] = {}
    totals = ConsumerTotals()
    while not stop.is_set():
        report = driver.run(consume_seed_batch(events, clock_ms(), batch_size,
                                               options=options))
        totals.add(report)
        stop.wait(SEED_POLL_S)
    return totals


def drain(driver: SyncDriver, coupon_id: str, name: str = "drain",
          config: ConsumerConfig = RESTARTED,
          clock_ms: Callable[[], int] = wall_clock_ms,
          crash_at: CrashPoint | None = None,
          codes: CouponCodes = SIMULATION_CODES) -> ConsumerTotals:
    """Consume until the queue has nothing left to give, in this thread.

    With the default (``claim_idle_ms=0``) every pending entry is reclaimed at
    once, as a consumer restarted after a crash would once the idle time has
    passed; entries the database keeps refusing are compensated after
    ``max_deliveries``, so draining always ends.
    """
    event = driver.run(load_event(coupon_id))
    totals = ConsumerTotals()
    while True:
        report = driver.run(consume_batch(event, name, clock_ms(), config, crash_at, codes))
        totals.add(report)
        if report.read == 0:
            return totals


def drain_seed(driver: SyncDriver, batch_size: int = SEED_BATCH_SIZE,
               clock_ms: Callable[[], int] = wall_clock_ms,
               crash_at: CrashPoint | None = None,
               options: SeedOptions = DEFAULT) -> ConsumerTotals:
    """Run the seed consumer until the global list is empty, in this thread."""
    events: dict[str, CouponEvent] = {}
    totals = ConsumerTotals()
    while True:
        report = driver.run(consume_seed_batch(events, clock_ms(), batch_size, crash_at,
                                               options))
        totals.add(report)
        if report.read == 0:
            return totals
