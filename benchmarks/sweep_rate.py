"""Sweep throughput: runs per minute of Story 1 (black_friday) at 10,000 users on one
local worker process, two, and a Dask LocalCluster of two worker processes; then the
overhead per run of each path: a run's task sent to a worker and an answer sent back
with no simulation in between (``repr`` of the task), many at once, as a sweep sends
them. Real runs are too noisy on a shared machine to show a few milliseconds.

Each executor is started and warmed up (its workers spawned and the package
imported) before the clock starts, so the figures are the steady rate a long sweep
sees. Every measurement writes to a fresh directory: nothing is resumed.

    python benchmarks/sweep_rate.py [--runs 8] [--round-trips 400]
"""

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, wait
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from distributed import LocalCluster

from couponsim.sweep.executors import open_executor
from couponsim.sweep.job import run_sweep
from couponsim.sweep.runner import tasks
from couponsim.sweep.spec import SweepSpec, load_sweep

SWEEP = """
name = "bench"
scenario = "black_friday"
set = ["traffic.users={users}"]
seed = {seed}
replications = {runs}
metrics = ["p99_status_s"]
[parameters]
"consumers.count" = [2]
"""


def spec(folder: Path, users: int, runs: int, seed: int) -> SweepSpec:
    path = folder / f"bench-{users}-{seed}.toml"
    path.write_text(SWEEP.format(users=users, runs=runs, seed=seed))
    return load_sweep(path)


@contextmanager
def dask_executor(workers: int) -> Iterator[Executor]:
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, \
            open_executor(scheduler=cluster.scheduler_address) as executor:
        yield executor


def timed(make: Callable[[], AbstractContextManager[Executor]], folder: Path,
          story: SweepSpec, round_trips: int) -> tuple[float, float]:
    """Seconds for the ``story`` sweep and for ``round_trips`` empty tasks on one
    executor, after a warm-up sweep of 4 tiny runs that spawns its workers."""
    with make() as executor:
        run_sweep(spec(folder, 100, 4, seed=99), executor, folder / "warm", progress=False)
        started = time.perf_counter()
        result = run_sweep(story, executor, folder / "story", progress=False)
        wall = time.perf_counter() - started
        assert result.invariants_ok
        empty = spec(folder, 100, round_trips, seed=3)
        started = time.perf_counter()
        wait([executor.submit(repr, task) for task in tasks(empty, empty.points())])
        return wall, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="Story 1 runs per executor")
    parser.add_argument("--round-trips", type=int, default=400,
                        help="empty tasks per executor for the overhead")
    args = parser.parse_args()
    executors: dict[str, Callable[[], AbstractContextManager[Executor]]] = {
        "local, 1 worker": lambda: open_executor(workers=1),
        "local, 2 workers": lambda: open_executor(workers=2),
        "Dask LocalCluster, 2 workers": lambda: dask_executor(2),
    }
    print(f"Story 1 at 10,000 users, {args.runs} runs per executor; overhead from "
          f"{args.round_trips} empty tasks")
    print(f"{'executor':<30}{'runs/min':>10}{'s/run':>8}{'vs 1 worker':>13}"
          f"{'overhead ms/run':>17}")
    base = None
    overhead: dict[str, float] = {}
    for name, make in executors.items():
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            wall, empty = timed(make, folder, spec(folder, 10_000, args.runs, seed=1),
                                args.round_trips)
        per_run = wall / args.runs
        base = base or per_run
        overhead[name] = empty / args.round_trips * 1000
        print(f"{name:<30}{60 / per_run:>10.1f}{per_run:>8.2f}{base / per_run:>12.2f}x"
              f"{overhead[name]:>17.2f}")
    extra = overhead["Dask LocalCluster, 2 workers"] - overhead["local, 2 workers"]
    print(f"\nDask's overhead per run over local processes (2 workers each): {extra:+.2f} ms")


if __name__ == "__main__":
    main()
