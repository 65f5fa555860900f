"""Issue calls per second on a Redis Cluster vs a single Redis, one hot coupon vs many.

One coupon's keys share one slot, so a hot coupon is served by one shard
whatever the number of shards; many coupons spread over the shards. Each
figure is one Python client sending the hardened issue script in pipelines of
100 (``SyncDriver.run_batch``) or one call at a time; the servers are the
script's own (a 3-master, 3-replica cluster and one redis-server, free ports).

    python benchmarks/cluster_rate.py [--calls 20000 --coupons 48]
"""

import argparse
import tempfile
import time
from pathlib import Path

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import IssueRequest, issue
from couponsim.local_redis import local_cluster, local_server


def rate(driver: SyncDriver, coupons: int, calls: int, batch: int) -> float:
    """Issue calls/s for ``calls`` requests spread round-robin over ``coupons`` coupons."""
    for n in range(coupons):
        driver.run(lifecycle.open_event(CouponEvent(f"k{n}", stock=10**9), Variant.HARDENED))
    requests = [IssueRequest(f"k{n % coupons}", f"u{n}", f"r{n}") for n in range(calls)]
    started = time.perf_counter()
    if batch == 1:
        for request in requests:
            driver.run(issue(request, 1))
    else:
        for first in range(0, calls, batch):
            driver.run_batch([issue(r, 1) for r in requests[first:first + batch]])
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--coupons", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, \
            local_server(Path(scratch) / "single") as server, \
            local_cluster(Path(scratch) / "cluster") as cluster:
        targets = {"single Redis": (server.url, server.client().flushall),
                   "cluster 3+3": (cluster.url, cluster.flushall)}
        print(f"{'target':<14}{'coupons':>8}{'batch':>7}{'issue calls/s':>15}")
        for name, (url, flush) in targets.items():
            driver = SyncDriver(connect(url), url)
            for coupons in (1, args.coupons):
                for batch in (1, 100):
                    flush()
                    calls = args.calls if batch > 1 else args.calls // 4
                    print(f"{name:<14}{coupons:>8}{batch:>7}"
                          f"{rate(driver, coupons, calls, batch):>15,.0f}")


if __name__ == "__main__":
    main()
