"""Wall time and peak memory of `couponsim run SCENARIO`, on fakeredis or a private Redis.

Targets from issue #6: Story 1 hardened under 10 s, Story 1 seed under 30 s,
Story 2 hardened under 60 s; from issue #17, on this 2-core machine: Story 1 at
50,000 users under 5 s on fakeredis and under 3 s on a private real Redis
(``local://``), Story 2 at 500,000 users under 60 s on a private Redis and under
4 min on fakeredis, in under 2 GB. Each run is a fresh process, as a user would
start it; its peak memory is its own maximum resident set (the private
redis-server, a process of its own, is not in it).

``--profile`` runs each scenario in this process instead and counts what the model
costs per user: SimPy events scheduled, Redis calls served (each a command, a
pipeline or a script call, as a client sends them) and the store's round trips (the
calls waiting together at the model's Redis server go as one).

    python benchmarks/simulation_wall_time.py [--story2-users N] [--redis-url local://]
    python benchmarks/simulation_wall_time.py --profile --users 20000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

RUNS = [("black_friday", "hardened", None, 10), ("black_friday", "seed", None, 30),
        ("overload_10x", "hardened", None, 60)]


def timed_run(command: list[str], timeout_s: float) -> tuple[str, float, float, float]:
    """Exit status, wall seconds, CPU seconds and peak resident MB of ``command`` in a
    fresh process (the private redis-server it reaps included). CPU time is the steadier
    figure on a machine others share."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return (str(process.returncode), time.perf_counter() - started,
                    usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
        if time.perf_counter() > deadline:
            process.kill()
            process.wait()
            return f"timeout after {timeout_s:.0f} s", time.perf_counter() - started, 0.0, 0.0
        time.sleep(0.05)


def profile(scenario_name: str, variant: str, users: int, redis_url: str) -> None:
    """SimPy events and Redis calls per user of one run, counted in this process."""
    import simpy

    from couponsim.connection import connect
    from couponsim.drivers.sync import SyncDriver
    from couponsim.persistence.repository import Repository
    from couponsim.sim import components
    from couponsim.sim.run import simulate
    from couponsim.sim.scenario import load_scenario

    counts = {"events": 0, "redis": 0}
    schedule = simpy.Environment.schedule
    serve = components.RedisServer.serve
    init = components.RedisServer.__init__
    servers: list[components.RedisServer] = []

    def counted_schedule(self: simpy.Environment, *args: Any, **kwargs: Any) -> None:
        counts["events"] += 1
        schedule(self, *args, **kwargs)

    def counted_serve(self: components.RedisServer, effect: Any,
                      back_ms: float = 0.0) -> Generator[simpy.Event, Any, Any]:
        counts["redis"] += 1
        return serve(self, effect, back_ms)

    def kept_init(self: components.RedisServer, *args: Any, **kwargs: Any) -> None:
        servers.append(self)
        init(self, *args, **kwargs)

    patches: list[tuple[Any, str, Callable[..., Any]]] = [
        (simpy.Environment, "schedule", counted_schedule),
        (components.RedisServer, "serve", counted_serve),
        (components.RedisServer, "__init__", kept_init)]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        scenario = load_scenario(scenario_name, [f'variant="{variant}"', f"traffic.users={users}"])
        with tempfile.TemporaryDirectory() as scratch:
            repository = Repository.from_url(f"sqlite:///{Path(scratch) / 'p.sqlite'}")
            outcome = simulate(scenario, SyncDriver(connect(redis_url), redis_url, repository))
    finally:
        for owner, name, _replacement in patches:
            setattr(owner, name, {"schedule": schedule, "serve": serve, "__init__": init}[name])
    store_calls = sum(server.batches for server in servers)
    print(f"{scenario_name:<14}{variant:<10}{users:>10,}{counts['events'] / users:>13.1f}"
          f"{counts['redis'] / users:>13.1f}{store_calls / users:>13.2f}{outcome.wall_s:>9.1f}  "
          f"{'ok' if outcome.report.ok else 'BROKEN'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--story2-users", type=int,
                        help="fewer users for Story 2 (the full 500,000 is slow, see the note)")
    parser.add_argument("--users", type=int, help="users of every scenario")
    parser.add_argument("--scenario", action="append", choices=["black_friday", "overload_10x"],
                        help="only these scenarios (repeatable)")
    parser.add_argument("--variant", action="append", choices=["hardened", "seed"],
                        help="only these variants (repeatable)")
    parser.add_argument("--redis-url", default="fake://default",
                        help="fake://NAME (default) or local:// for a private redis-server")
    parser.add_argument("--profile", action="store_true",
                        help="count SimPy events and Redis calls per user, in this process")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    runs = [(scenario, variant, args.users or (args.story2_users
                                               if scenario == "overload_10x" else None), target)
            for scenario, variant, _users, target in RUNS
            if (not args.scenario or scenario in args.scenario)
            and (not args.variant or variant in args.variant)]
    print(f"on {args.redis_url}")
    if args.profile:
        print(f"{'scenario':<14}{'variant':<10}{'users':>10}{'events/user':>13}"
              f"{'calls/user':>13}{'store/user':>13}{'wall s':>9}  invariants")
        for scenario, variant, users, _target in runs:
            profile(scenario, variant, users or 50_000, args.redis_url)
        return
    print(f"{'scenario':<14}{'variant':<10}{'users':>10}{'wall s':>9}{'CPU s':>8}"
          f"{'peak MB':>9}{'target s':>10}  exit")
    for scenario, variant, users, target in runs:
        with tempfile.TemporaryDirectory() as scratch:
            command = [sys.executable, "-m", "couponsim.cli", "run", scenario, "--variant",
                       variant, "--json", "--redis-url", args.redis_url,
                       "--db-url", f"sqlite:///{Path(scratch) / 'b.sqlite'}"]
            if users:
                command += ["--users", str(users)]
            code, wall, cpu, peak_mb = timed_run(command, args.timeout)
        shown = f"{users:,}" if users else "default"
        print(f"{scenario:<14}{variant:<10}{shown:>10}{wall:>9.1f}{cpu:>8.1f}{peak_mb:>9.0f}"
              f"{target:>10}  {code}", flush=True)


if __name__ == "__main__":
    main()
