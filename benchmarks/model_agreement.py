"""Does a change to the model keep its answers? The same scenario, replicated, by this
checkout's model and by another checkout's (issue #17: "same model, fewer events").

Each replication is a fresh process running one tree's code (its ``src`` first on
the path) with seeds 1..N. For every metric the table gives each model's mean and
95% t interval over the replications, and whether the intervals overlap: a model
that changes how it computes (batching, queues by formula, fewer events) but not
what it models should agree on every row.

    git worktree add /tmp/before <commit>
    python benchmarks/model_agreement.py --against /tmp/before \\
        --scenario overload_10x --users 20000 --replications 10 --redis-url local://
"""

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from couponsim.confidence import Interval, confidence_interval

HERE = Path(__file__).resolve().parents[1]

ONE_RUN = """
import json, sys, tempfile
from pathlib import Path
from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.persistence.repository import Repository
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario
from couponsim.sweep.metrics import measure

scenario, url, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
with tempfile.TemporaryDirectory() as scratch:
    store = SyncDriver(connect(url), url, Repository.from_url(f"sqlite:///{scratch}/a.sqlite"))
    outcome = simulate(load_scenario(scenario, overrides), store)
requests = outcome.requests
room = requests[requests.path.str.startswith("queued") & (requests.kind != "bot")]
waits = (room.status_ms - room.answer_ms) / 1000
metrics = measure(outcome)
metrics.update({
    "p50_room_wait_s": float(waits.quantile(0.5)) if len(waits) else None,
    "p99_room_wait_s": float(waits.quantile(0.99)) if len(waits) else None,
    "early_share": outcome.fairness.early_share,
    "overtaken": float(outcome.fairness.overtaken),
    "invariants_ok": float(outcome.report.ok),
    "wall_s": outcome.wall_s})
print(json.dumps(metrics))
"""


def one_run(tree: Path, scenario: str, url: str, overrides: list[str]) -> dict[str, float]:
    """The metrics of one replication, run by ``tree``'s code in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", ONE_RUN, scenario, url, *overrides],
        capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin:/usr/local/bin",
             "HOME": tempfile.gettempdir()})
    if result.returncode:
        raise RuntimeError(f"a run of {tree} failed:\n{result.stderr[-2000:]}")
    metrics: dict[str, float] = json.loads(result.stdout.splitlines()[-1])
    return metrics


def interval(values: list[float | None]) -> Interval | None:
    present = [v for v in values if v is not None]
    return confidence_interval(present) if len(present) >= 2 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True,
                        help="the other checkout (its src/ is put first on the path)")
    parser.add_argument("--scenario", default="overload_10x")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--redis-url", default="local://agreement",
                        help="fake://NAME or local://NAME (a private redis-server per run)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    trees = {"before": args.against.resolve(), "now": HERE}
    jobs = [(name, seed) for seed in range(1, args.replications + 1) for name in trees]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}

    def run(job: tuple[str, int]) -> tuple[str, dict[str, float]]:
        name, seed = job
        return name, one_run(trees[name], args.scenario, args.redis_url,
                             [f"traffic.users={args.users}", f"seed={seed}"])

    with ThreadPoolExecutor(args.workers) as pool:
        for name, metrics in tqdm(pool.map(run, jobs), total=len(jobs), desc="runs"):
            results[name].append(metrics)
    print(f"{args.scenario}, {args.users:,} users, {args.replications} replications each; "
          f"before = {trees['before']}")
    print(f"{'metric':<20}{'before':>28}{'now':>28}  intervals")
    for metric in results["now"][0]:
        before = interval([r.get(metric) for r in results["before"]])
        now = interval([r.get(metric) for r in results["now"]])
        if before is None or now is None:
            print(f"{metric:<20}{'(missing)':>28}")
            continue
        verdict = "overlap" if before.overlaps(now) else "DISAGREE"
        print(f"{metric:<20}{_say(before):>28}{_say(now):>28}  {verdict}")


def _say(interval: Interval) -> str:
    return f"{interval.mean:.4g} [{interval.low:.4g}, {interval.high:.4g}]"


if __name__ == "__main__":
    main()
