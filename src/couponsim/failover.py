"""What a real deployment loses: a master killed mid-event, a Redis restarted.

Redis replicates asynchronously: a master acknowledges an issue before its
replica has it. On loopback a replica is barely behind, so a kill alone rarely
loses anything; the experiments here make the loss happen every time, the way
it happens in production when a replica falls behind:

* cluster failover: the replica of the coupon's master is stopped (SIGSTOP)
  and the master is sent one value larger than the kernel's socket buffers
  (tcp_wmem + tcp_rmem): everything written after it waits in the master's own
  output buffer for that replica. Issues acknowledged then are lost when the
  master is SIGKILLed and the replica (woken with SIGCONT) is promoted;
* single Redis: SIGKILL and restart on the same files, with no persistence,
  AOF ``appendfsync everysec`` or ``always``.

Each run is a Jepsen-style history: what users were told (acknowledged ISSUED),
then what Redis and the database hold, judged by :func:`check_invariants`.
"""

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from couponsim.connection import connect
from couponsim.consumers import drain
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import RedisUnavailable, UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.consume import ConsumerConfig
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue
from couponsim.keys import CouponKeys
from couponsim.local_redis import LocalRedisError, RedisServer, local_cluster, local_server
from couponsim.persistence.repository import Repository
from couponsim.verify import InvariantReport, check_invariants

COUPON = "fo"
FILLER_BYTES = 48 * 1024 * 1024
"""Larger than loopback's socket buffers here (4 MiB send + 32 MiB receive at most)."""

DRAIN = ConsumerConfig(batch_size=100, claim_idle_ms=0, max_deliveries=2)
"""Consumers after the crash: reclaim at once, compensate what the database refuses twice."""

PERSISTENCE = {
    "no persistence": ("--appendonly", "no"),
    "AOF everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "AOF always": ("--appendonly", "yes", "--appendfsync", "always"),
}


@dataclass(frozen=True)
class Plan:
    """One event: ``users`` users for ``stock`` coupons, in three phases of equal size:
    before the lag, during it (acknowledged by the master only), after the failover."""

    stock: int = 150
    users: int = 300

    @property
    def phase(self) -> int:
        return self.users // 3


@dataclass
class History:
    """What the users were told, by request."""

    acknowledged: set[str] = field(default_factory=set)
    """Requests answered ISSUED."""
    failed: int = 0
    """Requests answered with an error (Redis down, or the event forgotten)."""
    unanswered: list[int] = field(default_factory=list)
    """Users whose last call failed, for :meth:`retry` once the store is back."""
    calls: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Issue calls per second so far, failures included."""
        return self.calls / self.seconds if self.seconds else 0.0

    def issue(self, driver: SyncDriver, users: range, prefix: str = "r") -> None:
        started = time.perf_counter()
        for n in users:
            self.calls += 1
            try:
                result = driver.run(issue(IssueRequest(COUPON, f"u{n}", f"{prefix}{n}"), 1))
            except (RedisUnavailable, redis.RedisError, UnknownCoupon):
                self.failed += 1
                self.unanswered.append(n)
                continue
            if result.outcome is IssueOutcome.ISSUED:
                self.acknowledged.add(result.request_id)
        self.seconds += time.perf_counter() - started

    def retry(self, driver: SyncDriver) -> None:
        """Each user who got an error presses again, with the same request: what a
        client does once the store answers. How many calls fell into the outage
        depends on how long the promotion took, so without the retries what the
        users ended with would depend on the machine's load."""
        users, self.unanswered = self.unanswered, []
        for n in users:
            self.issue(driver, range(n, n + 1))


@dataclass(frozen=True)
class Outcome:
    """One row of the mode table."""

    mode: str
    oversold: int
    duplicates: int
    lost: int
    """Acknowledged ISSUED but neither stored, compensated nor in flight (Jepsen's set
    "lost"), or, when the event itself was forgotten, every acknowledged issue."""
    compensated: int
    """Coupons taken back after the user was told ISSUED (the price of an arbiter)."""
    issue_rate: float
    """Issue calls per second of one client before anything failed: the cost of the
    mode's write path (WAIT, fsync), not of the outage."""
    report: InvariantReport | None = field(repr=False)
    """The checker's report, or None when Redis had forgotten the event."""

    @property
    def detected(self) -> bool:
        """The checker (or, for a forgotten event, the missing event) shows the loss."""
        return self.report is None or not self.report.ok


def _outcome(mode: str, driver: SyncDriver, repository: Repository,
             history: History, rate: float) -> Outcome:
    try:
        drain(driver, COUPON, config=DRAIN)
        report = driver.run(check_invariants(COUPON, with_database=True))
    except UnknownCoupon:
        return Outcome(mode, 0, 0, len(history.acknowledged), 0, rate, None)
    ledger = repository.ledger(COUPON)
    kept = {request for request, _user, _n in ledger.coupons} | ledger.compensated
    return Outcome(mode, report.oversold, len(report.duplicates),
                   len(history.acknowledged - kept), len(ledger.compensated & history.acknowledged),
                   rate, report)


def _open(driver: SyncDriver, plan: Plan) -> None:
    driver.run(lifecycle.open_event(CouponEvent(COUPON, stock=plan.stock), Variant.HARDENED))


def _lag(master: RedisServer, replica: RedisServer) -> None:
    """Stop the replica and fill the link: later writes stay in the master's memory.

    The replica first acknowledges everything so far (WAIT): on a loaded machine it
    can still be behind, even without the event itself, and the loss measured would
    then be the whole event, not the writes made during the lag."""
    with master.client() as client:
        if client.execute_command("WAIT", 1, 30_000) < 1:
            raise LocalRedisError(f"the replica of port {master.port} did not catch up in 30 s")
    replica.send(signal.SIGSTOP)
    with master.client() as client:
        client.set(f"filler:{CouponKeys(COUPON).tag}", b"x" * FILLER_BYTES)


def cluster_failover(directory: Path, repository: Repository, plan: Plan = Plan(),
                     wait_replicas: tuple[int, int] | None = None,
                     mode: str = "cluster failover") -> Outcome:
    """Kill the coupon's master while issue calls are in flight, its replica behind."""
    with local_cluster(directory) as cluster:
        # WAIT is the issue path's option; consumers write without it
        driver = SyncDriver(connect(cluster.url), cluster.url, repository,
                            wait_replicas=wait_replicas)
        consumers = SyncDriver(connect(cluster.url), cluster.url, repository)
        _open(consumers, plan)
        history = History()
        history.issue(driver, range(plan.phase))
        rate = history.rate
        drain(consumers, COUPON, config=DRAIN)
        master = cluster.master_of(CouponKeys(COUPON).stock)
        replica = cluster.replica_of(master)
        _lag(master, replica)
        history.issue(driver, range(plan.phase, 2 * plan.phase))
        drain(consumers, COUPON, config=DRAIN)  # the consumers keep up: the DB has them
        last_third = iter(range(2 * plan.phase, plan.users))
        with _issuing_meanwhile(driver, history, last_third):
            master.send(signal.SIGKILL)
            replica.send(signal.SIGCONT)
            cluster.wait_promoted(replica)
        history.issue(driver, range(next(last_third, plan.users), plan.users))
        history.retry(driver)
        history.issue(driver, range(plan.phase, plan.users), prefix="again")
        return _outcome(mode, consumers, repository, history, rate)


@contextmanager
def _issuing_meanwhile(driver: SyncDriver, history: History,
                       users: Iterator[int]) -> Iterator[None]:
    """A client issuing for ``users`` one by one while the block runs (the calls in
    flight when the master dies); the caller takes the users it did not reach."""
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set() and (user := next(users, None)) is not None:
            history.issue(driver, range(user, user + 1))

    thread = threading.Thread(target=client, name="issuing")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def restart(directory: Path, repository: Repository, persistence: str,
            plan: Plan = Plan()) -> Outcome:
    """SIGKILL a single Redis mid-event and restart it on its files."""
    with local_server(directory, *PERSISTENCE[persistence]) as server:
        driver = SyncDriver(connect(server.url), server.url, repository)
        _open(driver, plan)
        history = History()
        history.issue(driver, range(2 * plan.phase))
        rate = history.rate
        drain(driver, COUPON, config=DRAIN)
        server.send(signal.SIGKILL)
        server.start()
        driver = SyncDriver(connect(server.url), server.url, repository)
        history.issue(driver, range(plan.phase, plan.users), prefix="again")
        return _outcome(f"single Redis, {persistence}, SIGKILL + restart", driver,
                        repository, history, rate)


def single_baseline(directory: Path, repository: Repository, plan: Plan = Plan()) -> Outcome:
    """The same demand on one Redis that never fails: the table's reference row."""
    with local_server(directory) as server:
        driver = SyncDriver(connect(server.url), server.url, repository)
        _open(driver, plan)
        history = History()
        history.issue(driver, range(plan.users))
        return _outcome("single Redis, no failure", driver, repository, history, history.rate)
