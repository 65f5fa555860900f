"""Requests per second and latency of the live service's issue route, next to a bare
route of the same app, on one uvicorn worker over loopback; and what each lever brings.

The service runs in a subprocess (``couponsim serve --no-worker``: no consumer
competes for the CPU); a bounded load generator shares the machine's cores with
it, so the figures are a floor. Routes measured:

- ``bare``: ``/livez``, the app's own cost with no I/O;
- ``issue``: every request a new user for an event with a large stock, the path
  that writes the most; also with ``--no-coalesce`` (one Redis round trip per call);
- ``sold-out``: every request a new user for an event already sold out, as the
  crowd after the last coupon; also with ``--no-sold-out-flag`` (Redis asked each time);
- ``bare`` and ``issue`` again with ``--plain-asyncio`` (asyncio's loop and h11, not
  uvloop and httptools);
- ``bare`` and ``issue`` again with ``--workers 2`` (two service processes on the port).

The load generator's share of the machine's cores is printed for each route (its
CPU time over the run's wall time and the core count): the cores it takes are not
the service's.

Besides rps and latency, the server's CPU time per request: on a machine whose
cores the generator shares, the steadier figure.

With ``--load wrk`` (Debian's ``wrk``, C, one thread) the generator costs far
less CPU than httpx, which on 2 cores took most of a core itself.

    python benchmarks/service_rate.py [--redis-url redis://127.0.0.1:6379/14]
                                      [--connections 50] [--seconds 5] [--load wrk]
                                      [--only-all-levers]
"""

import argparse
import asyncio
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count

import httpx
import psutil  # type: ignore[import-untyped]

from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import IssueRequest, issue
from live_service import served

COUPONS = {"issue": "bench-service", "sold-out": "bench-sold-out"}
EXPECTED = {"bare": 200, "issue": 202, "sold-out": 410}
"""The answer each route must give; anything else is counted as an error."""


def _request(route: str, user: str) -> tuple[str, str, dict[str, str], str | None]:
    if route == "bare":
        return "GET", "/livez", {}, None
    return ("POST", "/api/v1/coupons/issue",
            {"Content-Type": "application/json", "X-User-ID": user},
            f'{{"couponId": "{COUPONS[route]}"}}')


async def _load(base: str, route: str, connections: int, seconds: float
                ) -> tuple[list[float], int]:
    """Latencies (s) of the requests answered within ``seconds``, and the errors."""
    latencies: list[float] = []
    errors = 0
    users = count()
    run = f"h{time.time_ns()}"   # its own users: an earlier run's hold coupons
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            method, path, headers, body = _request(route, f"{run}-{next(users)}")
            started = time.perf_counter()
            answer = await client.request(method, path, headers=headers, content=body)
            if answer.status_code != EXPECTED[route]:
                errors += 1
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(connections)))
    return latencies, errors


WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(__METHOD__, __PATH__,
    {["Content-Type"] = "application/json",
     ["X-User-ID"] = "__RUN__-" .. counter},
    __BODY__)
end
done = function(summary, latency, requests)
  io.write(string.format("wrk-result %d %.3f %.3f %d\\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
"""
"""Each request a new user (wrk's Lua random numbers repeat from run to run: the run's
own prefix keeps users apart). Prints requests, p50 and p99 (ms) and transport errors; wrk
counts non-2xx answers itself (the sold-out route's 410s are expected, and its stock is
checked in Redis afterwards)."""


def _wrk(base: str, route: str, connections: int, seconds: float) -> tuple[float, float,
                                                                           float, int, int]:
    method, path, _headers, body = _request(route, "")
    script = (WRK_SCRIPT.replace("__METHOD__", f'"{method}"').replace("__PATH__", f'"{path}"')
              .replace("__BODY__", "nil" if body is None else f"'{body}'")
              .replace("__RUN__", f"w{time.time_ns()}"))
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s",
                              file.name, f"{base}{path}"],
                             capture_output=True, text=True, check=True).stdout
    found = re.search(r"wrk-result (\d+) ([\d.]+) ([\d.]+) (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, p50, p99, errors = found.groups()
    wrong = int(non_2xx.group(1)) if non_2xx and route != "sold-out" else 0
    return (int(requests) / seconds, float(p50), float(p99), int(requests),
            int(errors) + wrong)


def _cpu_s(server: psutil.Process) -> float:
    """CPU time of the service: its process and every service process it started."""
    return sum(sum(process.cpu_times()[:2])
               for process in [server, *server.children(recursive=True)])


def _load_cpu_s() -> float:
    """CPU time of this process (httpx) and its finished children (wrk)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(base: str, server: psutil.Process, route: str, lever: str,
             args: argparse.Namespace) -> float:
    """One route under load: rps, latency, and the server's CPU time per request (the
    figure that holds on a shared machine: it is what one core can serve)."""
    cpu_before, load_before, wall_before = _cpu_s(server), _load_cpu_s(), time.perf_counter()
    if args.load == "wrk":
        rps, p50, p99, requests, errors = _wrk(base, route, args.connections, args.seconds)
    else:
        latencies, errors = asyncio.run(_load(base, route, args.connections, args.seconds))
        cuts = statistics.quantiles(latencies, n=100)
        rps, p50, p99 = len(latencies) / args.seconds, cuts[49] * 1000, cuts[98] * 1000
        requests = len(latencies)
    cpu_us = (_cpu_s(server) - cpu_before) / max(requests, 1) * 1e6
    load_share = (_load_cpu_s() - load_before) / (
        (time.perf_counter() - wall_before) * (os.cpu_count() or 1))
    print(f"{route:<9} {lever:<18} {rps:>8,.0f} rps   p50 {p50:6.1f} ms   "
          f"p99 {p99:6.1f} ms   server CPU {cpu_us:5.0f} us/request   "
          f"load generator {load_share:4.0%} of the cores   "
          f"({requests:,} requests, {errors} errors)")
    return rps


@contextmanager
def _service(args: argparse.Namespace, *flags: str) -> Iterator[tuple[str, psutil.Process]]:
    """``couponsim serve --no-worker --quiet`` with ``flags``; yields its base URL and
    process. Quiet: an access log line per request would be measured with every route."""
    with tempfile.TemporaryDirectory() as scratch, served(
            args.port, "--no-worker", "--quiet", "--redis-url", args.redis_url,
            "--db-url", f"sqlite:///{scratch}/bench.sqlite", *flags,
            timeout_s=180.0) as server:    # spawned service processes start slowly
        yield f"http://127.0.0.1:{args.port}", psutil.Process(server.pid)


def _until_every_process_serves(driver: SyncDriver, flags: tuple[str, ...]) -> None:
    """Each service process's status hub subscribes once its app has started; /livez
    answers as soon as the first one does, which would then take every connection."""
    processes = int(flags[flags.index("--workers") + 1]) if "--workers" in flags else 1
    deadline = time.monotonic() + 180
    while sum(1 for client in driver.client.client_list() if int(client["psub"])) < processes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{processes} service processes did not all start")
        time.sleep(0.2)


def _open_events(driver: SyncDriver) -> None:
    for coupon in COUPONS.values():
        driver.run(lifecycle.purge(coupon))
    driver.run(lifecycle.open_event(CouponEvent(COUPONS["issue"], stock=10**9),
                                    Variant.HARDENED))
    driver.run(lifecycle.open_event(CouponEvent(COUPONS["sold-out"], stock=1),
                                    Variant.HARDENED))
    driver.run(issue(IssueRequest(COUPONS["sold-out"], "the-winner", "the-winner"), 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--load", choices=["httpx", "wrk"],
                        default="wrk" if shutil.which("wrk") else "httpx",
                        help="the load generator (default: wrk when installed)")
    parser.add_argument("--only-all-levers", action="store_true",
                        help="measure bare, issue and sold-out with every lever on, and "
                             "nothing else: the target's ratio, quickly enough to repeat "
                             "on a shared machine")
    args = parser.parse_args()
    driver = SyncDriver.from_url(args.redis_url)
    _open_events(driver)
    print(f"one uvicorn worker, {args.connections} connections, {args.seconds:g} s per "
          f"route, Redis {args.redis_url}, load from {args.load}")
    rps: dict[tuple[str, str], float] = {}
    runs = [("all levers", (), ("bare", "issue", "sold-out")),
            ("no coalescing", ("--no-coalesce",), ("issue",)),
            ("no sold-out flag", ("--no-sold-out-flag",), ("sold-out",)),
            ("asyncio + h11", ("--plain-asyncio",), ("bare", "issue")),
            ("2 workers", ("--workers", "2"), ("bare", "issue"))][
        :1 if args.only_all_levers else None]
    try:
        for lever, flags, routes in runs:
            with _service(args, *flags) as (base, server):
                _until_every_process_serves(driver, flags)
                for route in routes:
                    rps[route, lever] = _measure(base, server, route, lever, args)
        stock_left = driver.client.get(f"coupon:stock:{{{COUPONS['sold-out']}}}")
        assert stock_left == "0", f"the sold-out event sold more: stock {stock_left!r}"
    finally:
        for coupon in COUPONS.values():
            driver.run(lifecycle.purge(coupon))
    for (route, lever), value in rps.items():
        if route != "bare":
            bare = rps["bare", lever if ("bare", lever) in rps else "all levers"]
            print(f"{route} ({lever}) at {value / bare:.0%} of the bare route")
    print("target: the issue route at >= 60% of the bare route")


if __name__ == "__main__":
    main()
