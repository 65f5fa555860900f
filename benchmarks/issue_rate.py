"""How many hardened issue calls per second one Python process gets from Redis.

Prints the rate of the hardened issue flow run one call at a time (sync
driver), in pipelines (``SyncDriver.run_batch``), and, for the same script on
the same server, the rate redis-benchmark gets with 50 clients, so the
Python-side overhead can be read off. Every call issues a coupon (the stock
is large and every user new), the path that writes the most.

    python benchmarks/issue_rate.py [--redis-url redis://127.0.0.1:6379/14]
"""

import argparse
import shutil
import subprocess
import time
from urllib.parse import urlsplit

from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import lifecycle
from couponsim.flows.issue import REQUEST_RECORD_TTL_S, IssueRequest, issue
from couponsim.keys import CouponKeys
from couponsim.scripts import script_source

COUPON = "bench"


def _fresh_event(driver: SyncDriver) -> None:
    driver.run(lifecycle.purge(COUPON))
    driver.run(lifecycle.warm_up(CouponEvent(COUPON, stock=10**9)))
    driver.run(lifecycle.activate(COUPON))


def one_at_a_time(driver: SyncDriver, calls: int) -> float:
    _fresh_event(driver)
    started = time.perf_counter()
    for n in range(calls):
        driver.run(issue(IssueRequest(COUPON, f"u{n}", f"r{n}"), 1))
    return calls / (time.perf_counter() - started)


def pipelined(driver: SyncDriver, calls: int, batch: int) -> float:
    _fresh_event(driver)
    started = time.perf_counter()
    for first in range(0, calls, batch):
        driver.run_batch([issue(IssueRequest(COUPON, f"u{n}", f"r{n}"), 1)
                          for n in range(first, min(first + batch, calls))])
    return calls / (time.perf_counter() - started)


def redis_benchmark(driver: SyncDriver, url: str, calls: int) -> float | None:
    """redis-benchmark's rate for EVALSHA of the same script, or None without the tool."""
    if shutil.which("redis-benchmark") is None or urlsplit(url).scheme != "redis":
        return None
    _fresh_event(driver)
    sha = driver.client.script_load(script_source("issue"))
    keys = CouponKeys(COUPON)
    parts = urlsplit(url)
    command = [
        "redis-benchmark", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379),
        "--dbnum", (parts.path.strip("/") or "0"), "-n", str(calls), "-c", "50",
        "-r", "1000000000", "--csv",
        "EVALSHA", sha, "6", keys.info, keys.active, keys.stock, keys.holders, keys.queue,
        keys.request("r__rand_int__"),
        COUPON, str(REQUEST_RECORD_TTL_S), "r__rand_int__", "u__rand_int__", "1",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    row = output.strip().splitlines()[-1].split(",")
    return float(row[1].strip('"'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is kept")
    args = parser.parse_args()
    driver = SyncDriver.from_url(args.redis_url)

    def median(measure: object) -> float:
        runs = sorted(measure() for _ in range(args.repeat))  # type: ignore[operator]
        return runs[len(runs) // 2]

    rows = [("sync, one call at a time", median(lambda: one_at_a_time(driver, args.calls)))]
    for batch in (10, 100, 1000):
        rows.append((f"sync, pipelines of {batch}",
                     median(lambda b=batch: pipelined(driver, args.calls * 5, b))))
    fake = SyncDriver.from_url("fake://bench")
    rows.append(("fakeredis, one call at a time", median(lambda: one_at_a_time(fake, 5_000))))
    bench = redis_benchmark(driver, args.redis_url, args.calls * 10)
    if bench is not None:
        rows.append(("redis-benchmark EVALSHA, 50 clients", bench))
    driver.run(lifecycle.purge(COUPON))

    print(f"hardened issue script against {args.redis_url} (median of {args.repeat})")
    for name, rate in rows:
        print(f"  {name:<40}{rate:>12,.0f} calls/s")


if __name__ == "__main__":
    main()
