"""A whole sweep: the grid, the target search, and the files a planner keeps.

The output directory holds ``runs/`` (one JSON file per finished run: the
resumable store), ``runs.parquet``/``runs.csv`` (one row per grid run),
``summary.parquet``/``summary.csv`` (per point and metric: mean, 95% interval),
``search.csv``/``search.json`` (the points the search asked about, its answer)
and a PNG per plot.
"""

import json
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from couponsim.sweep.plots import metric_plot, search_plot
from couponsim.sweep.runner import RunStore, run_all, tasks
from couponsim.sweep.search import SearchResult, bisect, decide
from couponsim.sweep.spec import SweepSpec, Target
from couponsim.sweep.stats import runs_table, summary_table, verdict


@dataclass(frozen=True)
class SweepResult:
    spec: SweepSpec
    runs: pd.DataFrame | None
    """One row per grid run; None when the sweep only searches."""
    summary: pd.DataFrame | None
    search: SearchResult | None

    @property
    def invariants_ok(self) -> bool:
        """Whether every invariant held in every run, the grid's and the search's."""
        tables = [self.runs, self.search.runs if self.search else None]
        return all(bool(t.invariants_ok.all()) for t in tables if t is not None)


def run_sweep(spec: SweepSpec, executor: Executor, out: Path, progress: bool = True,
              until_decisive: int | None = None) -> SweepResult:
    """Run the grid (every point x replication), then the target search, on ``executor``;
    finished runs are kept under ``out/runs`` and not run again. With a target, each
    grid point gets a verdict; ``until_decisive`` adds replications to the
    inconclusive ones (grid and search alike), up to that many runs per point."""
    store = RunStore(out / "runs")
    runs = summary = None
    if spec.parameters:
        parameters = [name for name, _ in spec.parameters]
        points = spec.points()
        records = run_all(tasks(spec, points), executor, store, progress, spec.name)
        if spec.target is not None and until_decisive is not None:
            records = [record for point in points for record in decide(
                spec, point, executor, store, until_decisive, progress)[0]]
        runs = runs_table(records, spec.metrics)
        summary = summary_table(runs, parameters, spec.metrics)
        if spec.target is not None:
            summary = with_verdicts(summary, runs, parameters, spec.target)
    found = bisect(spec, executor, store, progress, until_decisive) if spec.search else None
    return SweepResult(spec, runs, summary, found)


def with_verdicts(summary: pd.DataFrame, runs: pd.DataFrame, parameters: list[str],
                  target: Target) -> pd.DataFrame:
    """The summary with a ``verdict`` column on the target metric's rows (meets,
    misses, inconclusive); empty on the other metrics' rows."""
    found = {values if isinstance(values, tuple) else (values,): verdict(group, target).value
             for values, group in runs.groupby(parameters, sort=False)}
    column = [found[tuple(row[parameters])] if row.metric == target.metric else ""
              for _, row in summary.iterrows()]
    return summary.assign(verdict=column)


def save(result: SweepResult, out: Path) -> list[Path]:
    """Write the tables (Parquet and CSV), the search's answer (JSON) and the plots (PNG).

    Figures are made without pyplot, so saving from a notebook leaves its backend alone."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    spec = result.spec
    for name, table in (("runs", result.runs), ("summary", result.summary)):
        if table is not None:
            table.to_parquet(out / f"{name}.parquet", index=False)
            table.to_csv(out / f"{name}.csv", index=False)
            written += [out / f"{name}.parquet", out / f"{name}.csv"]
    if result.summary is not None:
        first = spec.parameters[0][0]
        for metric in spec.metrics:
            figure = Figure(figsize=(7, 4.5))
            metric_plot(result.summary, first, metric, spec.target, ax=figure.add_subplot())
            written.append(out / f"{metric}.png")
            figure.savefig(written[-1], dpi=110, bbox_inches="tight")
    if result.search is not None:
        found = result.search
        found.steps.to_csv(out / "search.csv", index=False)
        (out / "search.json").write_text(json.dumps(
            {"parameter": found.search.parameter, "target": str(found.target),
             "answer": found.answer, "inconclusive": found.inconclusive,
             "out_of_reach": found.out_of_reach,
             "verdicts": {str(row[found.search.parameter]): row.verdict for _, row in
                          found.steps[found.steps.metric == found.target.metric].iterrows()},
             "points": int(found.steps.step.nunique()),
             "runs": len(found.runs), "invariants_ok": bool(found.runs.invariants_ok.all())},
            indent=2))
        figure = Figure(figsize=(8, 4.5))
        search_plot(found, ax=figure.add_subplot())
        written += [out / "search.csv", out / "search.json", out / "search.png"]
        figure.savefig(written[-1], dpi=110, bbox_inches="tight")
    return written
