"""Runs of a sweep: their seeds, one run in a worker, the store that makes sweeps resumable.

Seeds. Replication r of every point gets child r of ``SeedSequence(sweep seed)``
(common random numbers): two points differ by their parameters, not by their
luck, which is what a comparison and a bisection need; the replications of one
point are independent. Child r is the same however many children are spawned,
so adding replications keeps the earlier runs, and a run's seed depends on
nothing but the sweep seed and r: not on which worker runs it, nor when.

Isolation. Each run gets a fresh in-process FakeServer and its own SQLite file
in a temporary directory (the embedded defaults), so runs in threads or
processes of one machine, or on a cluster, cannot see each other's data.

The store keeps each finished run as ``runs/KEY.json`` under the output
directory, KEY a digest of the run's whole scenario (parameters and seed
included): a re-run skips what is there, an edited base scenario runs afresh.
"""

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import Executor, Future, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
from tqdm import tqdm

from couponsim.drivers.sync import SyncDriver
from couponsim.persistence.repository import Repository
from couponsim.sim.run import simulate
from couponsim.sim.scenario import Scenario
from couponsim.sweep.metrics import measure
from couponsim.sweep.spec import Point, SweepSpec


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run: plain data, so it pickles to any executor."""
    point: Point
    replication: int
    scenario: Scenario

    @property
    def key(self) -> str:
        scenario = json.dumps(asdict(self.scenario), sort_keys=True, default=str)
        return hashlib.sha256(scenario.encode()).hexdigest()[:20]


def replication_seed(sweep_seed: int, replication: int) -> int:
    """The scenario seed of replication ``replication``: child ``replication`` of the
    sweep's SeedSequence, as 63 bits so it fits a signed column in Parquet and CSV."""
    child = np.random.SeedSequence(sweep_seed, spawn_key=(replication,))
    return int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))


def tasks(spec: SweepSpec, points: Iterable[Point],
          replications: Iterable[int] | None = None) -> list[RunTask]:
    """Every replication of every point, point by point: the sweep's ``0..n-1``, or
    the given ones (more of a point that needs them, on the same seeds as any other
    point's replications of those numbers)."""
    numbers = list(range(spec.replications) if replications is None else replications)
    return [RunTask(point, r, spec.scenario_at(point, replication_seed(spec.seed, r)))
            for point in points for r in numbers]


def execute(task: RunTask) -> dict[str, Any]:
    """One run on its own embedded store; the record the store keeps and the table shows."""
    with tempfile.TemporaryDirectory(prefix="couponsim-run-") as scratch:
        repository = Repository.from_url(f"sqlite:///{Path(scratch) / 'run.sqlite'}")
        try:
            client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
            outcome = simulate(task.scenario, SyncDriver(client, "fake://sweep", repository))
        finally:
            repository.engine.dispose()
    return {
        "key": task.key, "point": [list(pair) for pair in task.point],
        "replication": task.replication, "seed": task.scenario.seed,
        "invariants_ok": outcome.report.ok,
        "broken": [check.name for check in outcome.report.checks if not check.ok],
        "metrics": measure(outcome),
    }


class RunStore:
    """Finished runs as one JSON file each, written whole or not at all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def save(self, record: dict[str, Any]) -> None:
        """Write beside, then rename: a sweep killed mid-write leaves no half record."""
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.path(f"{record['key']}.{os.getpid()}.partial")
        partial.write_text(json.dumps(record, indent=1))
        partial.replace(self.path(record["key"]))


def run_all(work: list[RunTask], executor: Executor, store: RunStore,
            progress: bool = True, description: str = "runs") -> list[dict[str, Any]]:
    """The records of ``work`` in its order: stored ones read back, the rest run on
    ``executor`` (any concurrent.futures executor: local processes or Dask's) and stored
    as each finishes, so an interrupted sweep loses only the runs in flight."""
    records: dict[str, dict[str, Any]] = {}
    for task in work:
        stored = store.load(task.key)
        if stored is not None:
            records[task.key] = stored
    todo = list({task.key: task for task in work if task.key not in records}.values())
    with tqdm(total=len(work), initial=len(work) - len(todo), unit="run", desc=description,
              disable=not progress or None, file=sys.stderr) as bar:
        futures: list[Future[dict[str, Any]]] = [executor.submit(execute, t) for t in todo]
        try:
            for future in as_completed(futures):
                record = future.result()
                store.save(record)
                records[record["key"]] = record
                bar.update(1)
        finally:
            for future in futures:
                future.cancel()
    return [records[task.key] for task in work]
