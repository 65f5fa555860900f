"""The background half of the service: for every event defined in Redis, the
activation and end schedulers, the waiting room's admission and a consumer.

It runs in threads on the sync driver (the consumers block in XREADGROUP, the
repository is synchronous), either beside the app in ``couponsim serve`` or
alone in ``couponsim worker``. Every step is safe in several processes at once:
transitions are scripts that refuse to go back, admission takes each user
exactly once, consumers share the coupon's consumer group.
"""

import functools
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from couponsim.codes import CouponCodes
from couponsim.connection import connect
from couponsim.consumers import LIVE, ConsumerTotals, run_consumer
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.errors import (
    CouponsimError,
    DatabaseUnavailable,
    InvalidInput,
    RedisUnavailable,
)
from couponsim.flows.consume import ConsumerConfig
from couponsim.flows.gateway import Gateway, admission_round
from couponsim.flows.lifecycle import event_ids, follow_schedule
from couponsim.flows.waiting_room import recover_admitted
from couponsim.persistence.repository import Repository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    tick_s: float = 0.1
    """How often the schedulers look and admission admits a batch."""
    admission_batch: int = 100
    """Users admitted per tick: with the default tick, up to 1,000 a second."""
    rescan_ticks: int = 10
    """Look for newly defined events every this many ticks (SCAN walks the keyspace)."""
    consumer: ConsumerConfig = LIVE
    """Each coupon's consumer: its batch size (the twin check sets it, to run the
    consumers the model is given)."""

    def __post_init__(self) -> None:
        if not 0 < self.tick_s < math.inf or self.admission_batch < 1 or self.rescan_ticks < 1:
            raise InvalidInput("the tick must be above 0, the admission batch and the "
                               "rescan at least 1")


def worker_name() -> str:
    """A consumer name unique to this process, fit for the ID rules."""
    raw = f"{socket.gethostname()}-{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:48]


@dataclass
class Worker:
    redis_url: str
    repository: Repository
    config: WorkerConfig = field(default_factory=WorkerConfig)
    gateway: Gateway = field(default_factory=Gateway)
    """Admission's own breaker: a batch is a call through it."""
    codes: CouponCodes = field(kw_only=True)
    """The deployment's coupon codes (``ServiceConfig.codes``): no default, so a worker
    never makes codes with the simulation's public secret."""
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _consumed: set[str] = field(default_factory=set, init=False)
    consumers: dict[str, ConsumerTotals] = field(default_factory=dict, init=False)
    """What this process's consumer of each coupon has decided so far."""

    def compensating_only(self) -> list[str]:
        """The coupons whose consumer here has compensated every request it decided: a
        database that refuses every coupon (rows of another event under the same id)
        leaves each winner FAILED while Redis and the database both answer."""
        return sorted(coupon for coupon, totals in self.consumers.items()
                      if totals.compensated and not totals.persisted)

    def start(self) -> None:
        self._spawn("couponsim-scheduler", self._schedule)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def run_until_stopped(self) -> None:
        """For ``couponsim worker``: the foreground waits; Ctrl-C stops every thread."""
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _driver(self) -> SyncDriver:
        return SyncDriver(connect(self.redis_url), self.redis_url, self.repository)

    def _spawn(self, name: str, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _schedule(self) -> None:
        driver: SyncDriver | None = None
        coupons: list[str] = []
        tick = 0
        while not self._stop.wait(self.config.tick_s):
            try:
                driver = driver or self._driver()
                if tick % self.config.rescan_ticks == 0:
                    coupons = driver.run(event_ids())
                tick += 1
                for coupon_id in coupons:
                    self._tend(driver, coupon_id)
            except (RedisUnavailable, DatabaseUnavailable) as exc:
                log.warning("worker: %s; trying again", exc)

    def _tend(self, driver: SyncDriver, coupon_id: str) -> None:
        """One tick for one event; an event that vanished (purged) is skipped."""
        try:
            driver.run(follow_schedule(coupon_id, wall_clock_ms()))
            if coupon_id not in self._consumed:
                driver.run(recover_admitted(coupon_id, wall_clock_ms()))
                self._consumed.add(coupon_id)
                totals = self.consumers.setdefault(coupon_id, ConsumerTotals())
                self._spawn(f"couponsim-consumer-{coupon_id}",
                            functools.partial(run_consumer, config=self.config.consumer,
                                              totals=totals, codes=self.codes),
                            self._driver(),
                            coupon_id, worker_name(), self._stop)
            driver.run(admission_round(self.gateway, coupon_id, self.config.admission_batch))
        except (RedisUnavailable, DatabaseUnavailable):
            raise
        except CouponsimError as exc:
            log.warning("worker: coupon %s: %s", coupon_id, exc)
