"""Requests per second and latency of the live service's issue route, next to a bare
route of the same app, on one uvicorn worker over loopback.

The service runs in a subprocess (``couponsim serve --no-worker``: no consumer
competes for the CPU); a bounded Python load generator (httpx, asyncio,
``--connections`` concurrent clients, ``--seconds`` per route) shares the
machine's cores with it, so the figures are a floor. Every issue request is a
new user for an event with a large stock: the path that writes the most.
With ``--load wrk`` (Debian's ``wrk``, C, one thread) the generator costs far
less CPU than httpx, which on 2 cores took most of a core itself.

    python benchmarks/service_rate.py [--redis-url redis://127.0.0.1:6379/14]
                                      [--connections 50] [--seconds 5] [--load wrk]
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import count

import httpx

from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle

COUPON = "bench-service"


async def _load(base: str, route: str, connections: int, seconds: float) -> list[float]:
    """Latencies (s) of every request answered within ``seconds``; non-2xx is an error."""
    latencies: list[float] = []
    users = count()
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            if route == "issue":
                answer = await client.post("/api/v1/coupons/issue", json={"coupon_id": COUPON},
                                           headers={"X-User-ID": f"u{next(users)}"})
            else:
                answer = await client.get("/livez")
            if answer.status_code >= 300:
                raise RuntimeError(f"{route}: {answer.status_code} {answer.text}")
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(connections)))
    return latencies


WRK_ISSUE = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/api/v1/coupons/issue",
    {["Content-Type"] = "application/json",
     ["X-User-ID"] = "w" .. tostring(math.random(1, 1000000000)) .. "-" .. counter},
    '{"coupon_id": "__COUPON__"}')
end
""".replace("__COUPON__", COUPON)
"""Each issue request a new user: the path that writes the most."""

WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format("wrk-result %d %.3f %.3f %d\\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""
"""Requests, p50 and p99 (ms) and errors (non-2xx included) on one line."""


def _wrk(base: str, route: str, connections: int, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write((WRK_ISSUE if route == "issue" else "") + WRK_DONE)
        script.flush()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", script.name,
             f"{base}{'/livez' if route == 'bare' else '/api/v1/coupons/issue'}"],
            capture_output=True, text=True, check=True).stdout
    found = re.search(r"wrk-result (\d+) ([\d.]+) ([\d.]+) (\d+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, p50, p99, errors = found.groups()
    rps = int(requests) / seconds
    print(f"{route:<8} {rps:>8,.0f} rps   p50 {float(p50):6.1f} ms   p99 {float(p99):6.1f} ms"
          f"   ({int(requests):,} requests, {errors} errors)  [wrk]")
    return rps


def _report(route: str, latencies: list[float], seconds: float) -> float:
    cuts = statistics.quantiles(latencies, n=100)
    rps = len(latencies) / seconds
    print(f"{route:<8} {rps:>8,.0f} rps   p50 {cuts[49] * 1000:6.1f} ms   "
          f"p99 {cuts[98] * 1000:6.1f} ms   ({len(latencies):,} requests)")
    return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-coalesce", action="store_true",
                        help="serve with one Redis round trip per call")
    parser.add_argument("--load", choices=["httpx", "wrk"],
                        default="wrk" if shutil.which("wrk") else "httpx",
                        help="the load generator (default: wrk when installed)")
    args = parser.parse_args()
    driver = SyncDriver.from_url(args.redis_url)
    driver.run(lifecycle.purge(COUPON))
    driver.run(lifecycle.open_event(CouponEvent(COUPON, stock=10**9), Variant.HARDENED))
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [sys.executable, "-m", "couponsim.cli", "serve", "--no-worker", "--port",
             str(args.port), "--redis-url", args.redis_url,
             "--db-url", f"sqlite:///{scratch}/bench.sqlite",
             *(["--no-coalesce"] if args.no_coalesce else [])], env=os.environ)
        base = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{base}/livez").raise_for_status()
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            print(f"one uvicorn worker, {args.connections} connections, "
                  f"{args.seconds:g} s per route, Redis {args.redis_url}, "
                  f"{'one round trip per call' if args.no_coalesce else 'coalesced'}")
            if args.load == "wrk":
                bare = _wrk(base, "bare", args.connections, args.seconds)
                issued = _wrk(base, "issue", args.connections, args.seconds)
            else:
                bare = _report("bare", asyncio.run(
                    _load(base, "bare", args.connections, args.seconds)), args.seconds)
                issued = _report("issue", asyncio.run(
                    _load(base, "issue", args.connections, args.seconds)), args.seconds)
            print(f"issue route at {issued / bare:.0%} of the bare route (target >= 60%)")
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(20)
            driver.run(lifecycle.purge(COUPON))


if __name__ == "__main__":
    main()
