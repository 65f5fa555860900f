"""Target search: the smallest value of a monotone parameter that meets a target.

A full grid of consumers 1..64 with 10 replications is 640 runs; bisection over
replicated points asks about log2(64) + 2 points. It assumes monotony: once a
value meets the target, every larger one does (more consumers, a faster
admission rate). A point meets the target only with confidence: its whole 95%
interval must be on the right side of the line, so a noisy point counts as
not meeting it and the search moves up, never down, on doubt.
"""

from concurrent.futures import Executor
from dataclasses import dataclass

import pandas as pd

from couponsim.sweep.runner import RunStore, run_all, tasks
from couponsim.sweep.spec import Search, SweepSpec, Target, Value
from couponsim.sweep.stats import meets, runs_table, summary_table


@dataclass(frozen=True)
class SearchResult:
    search: Search
    target: Target
    answer: Value | None
    """The smallest value meeting the target; None when even ``search.high`` misses it."""
    runs: pd.DataFrame
    """Every run the search took, in the order its points were asked about."""
    steps: pd.DataFrame
    """Per point asked about, in order: the summary rows with ``step`` and ``meets_target``."""


def bisect(spec: SweepSpec, executor: Executor, store: RunStore,
           progress: bool = True) -> SearchResult:
    """Ask ``high`` (is the target reachable?), then ``low`` (is it met already?), then
    halve the bracket until it is ``resolution`` wide; each point with the sweep's
    replications, run in parallel on ``executor``."""
    if spec.search is None or spec.target is None:
        raise ValueError("bisect needs a sweep with a target and a search")
    search, target = spec.search, spec.target
    tables: list[pd.DataFrame] = []
    verdicts: list[bool] = []

    def met(value: Value) -> bool:
        point = ((search.parameter, value),)
        records = run_all(tasks(spec, [point]), executor, store, progress,
                          f"{search.parameter}={value}")
        tables.append(runs_table(records, spec.metrics))
        verdicts.append(meets(tables[-1], target))
        return verdicts[-1]

    low, high = search.low, search.high
    answer: Value | None = None
    if met(high):
        answer = high
        if met(low):
            answer = low
        else:
            while high - low > search.resolution:
                middle = (low + high) // 2 if search.whole else (low + high) / 2
                if met(middle):
                    high = answer = middle
                else:
                    low = middle
    runs = pd.concat(tables, ignore_index=True)
    steps = summary_table(runs, [search.parameter], spec.metrics)
    order = pd.DataFrame({search.parameter: [t[search.parameter].iloc[0] for t in tables],
                          "step": range(1, len(tables) + 1), "meets_target": verdicts})
    return SearchResult(search, target, answer, runs, steps.merge(order, on=search.parameter))
