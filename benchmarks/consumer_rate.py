"""How many coupons per second one hardened consumer persists.

For each database (SQLite file, PostgreSQL) and batch size, the queue of one
coupon is filled with issued requests (pipelined), then one consumer drains
it in this process: read from the consumer group, one transaction per batch,
user cache, finalize script. The rate is coupons persisted per second of
draining; the checker confirms every run (nothing lost, no duplicate).

    python benchmarks/consumer_rate.py [--redis-url ...] [--postgres-url ...] [--coupons N]
"""

import argparse
import tempfile
import time
from pathlib import Path

from couponsim.connection import connect
from couponsim.consumers import drain
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import CouponsimError
from couponsim.event import CouponEvent
from couponsim.flows import lifecycle
from couponsim.flows.consume import ConsumerConfig
from couponsim.flows.issue import IssueRequest, issue
from couponsim.persistence.repository import Repository
from couponsim.verify import check_invariants

COUPON = "bench-consume"


def measure(driver: SyncDriver, coupons: int, batch_size: int) -> float:
    driver.run(lifecycle.purge(COUPON, with_database=True))
    driver.run(lifecycle.warm_up(CouponEvent(COUPON, stock=coupons)))
    driver.run(lifecycle.activate(COUPON))
    for first in range(0, coupons, 1000):
        driver.run_batch([issue(IssueRequest(COUPON, f"u{n}", f"r{n}"), 1)
                          for n in range(first, min(first + 1000, coupons))])
    started = time.perf_counter()
    totals = drain(driver, COUPON, "bench", ConsumerConfig(batch_size=batch_size))
    elapsed = time.perf_counter() - started
    report = driver.run(check_invariants(COUPON, with_database=True))
    if not report.ok or totals.persisted != coupons:
        raise SystemExit(f"benchmark run broke an invariant: {report.checks}")
    driver.run(lifecycle.purge(COUPON, with_database=True))
    return coupons / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--postgres-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--coupons", type=int, default=10_000)
    args = parser.parse_args()
    client = connect(args.redis_url)
    with tempfile.TemporaryDirectory() as scratch:
        databases = {"SQLite (file, WAL)": f"sqlite:///{Path(scratch) / 'bench.sqlite'}",
                     "PostgreSQL": args.postgres_url}
        print(f"one hardened consumer draining {args.coupons:,} coupons from {args.redis_url}")
        for name, url in databases.items():
            try:
                repository = Repository.from_url(url)
            except CouponsimError as exc:
                print(f"  {name:<20} skipped: {exc}")
                continue
            driver = SyncDriver(client, args.redis_url, repository)
            for batch_size in (10, 500):
                rate = measure(driver, args.coupons, batch_size)
                print(f"  {name:<20} batch {batch_size:>4}: {rate:>10,.0f} coupons/s")
            repository.engine.dispose()


if __name__ == "__main__":
    main()
