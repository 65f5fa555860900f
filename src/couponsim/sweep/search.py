"""Target search: the smallest value of a monotone parameter that meets a target.

A full grid of consumers 1..64 with 10 replications is 640 runs; bisection over
replicated points asks about log2(64) + 2 points. It assumes monotony: once a
value meets the target, every larger one does (more consumers, a faster
admission rate).

Each point asked about gets one of three verdicts (``stats.Verdict``): it meets
the target with 95% confidence, misses it with confidence, or is inconclusive
(its interval straddles the line). Only a confident miss of ``high`` says the
target is out of reach; an inconclusive point is "not known to meet", so the
bisection looks above it, and the answer lists it: with few replications a
noisy point must not read as a miss. ``until_decisive`` adds replications to an
inconclusive point until it is decided (or the cap is reached); they are the
next replication numbers, whose seeds every other point shares, so common random
numbers still hold between points.
"""

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from couponsim.sweep.runner import RunStore, run_all, tasks
from couponsim.sweep.spec import Point, Search, SweepSpec, Target, Value
from couponsim.sweep.stats import Verdict, runs_table, summary_table, verdict


@dataclass(frozen=True)
class SearchResult:
    search: Search
    target: Target
    answer: Value | None
    """The smallest value asked about that meets the target with confidence; None when
    none did (see ``inconclusive`` and ``steps`` for why)."""
    runs: pd.DataFrame
    """Every run the search took, in the order its points were asked about."""
    steps: pd.DataFrame
    """Per point asked about, in order: the summary rows with ``step`` and ``verdict``."""

    @property
    def inconclusive(self) -> list[Value]:
        """The values asked about that stayed inconclusive, smallest first."""
        rows = self.steps[(self.steps.metric == self.target.metric)
                          & (self.steps.verdict == Verdict.INCONCLUSIVE.value)]
        return sorted(rows[self.search.parameter].tolist())

    @property
    def out_of_reach(self) -> bool:
        """Whether ``high`` itself misses the target with confidence."""
        rows = self.steps[(self.steps.metric == self.target.metric)
                          & (self.steps[self.search.parameter] == self.search.high)]
        return bool((rows.verdict == Verdict.MISSES.value).any())


def decide(spec: SweepSpec, point: Point, executor: Executor, store: RunStore,
           until_decisive: int | None = None, progress: bool = True,
           ) -> tuple[list[dict[str, Any]], Verdict]:
    """The runs of one point and their verdict against the sweep's target. With
    ``until_decisive``, an inconclusive point's replications double (capped there)
    until it meets or misses with confidence, or has ``until_decisive`` runs."""
    if spec.target is None:
        raise ValueError("decide needs a sweep with a target")
    description = ", ".join(f"{name}={value}" for name, value in point)
    count = spec.replications
    records = run_all(tasks(spec, [point]), executor, store, progress, description)
    found = verdict(runs_table(records, spec.metrics), spec.target)
    while found is Verdict.INCONCLUSIVE and until_decisive is not None \
            and count < until_decisive:
        more = min(2 * count, until_decisive)
        records += run_all(tasks(spec, [point], range(count, more)), executor, store,
                           progress, f"{description} (to {more} runs)")
        count = more
        found = verdict(runs_table(records, spec.metrics), spec.target)
    return records, found


def bisect(spec: SweepSpec, executor: Executor, store: RunStore,
           progress: bool = True, until_decisive: int | None = None) -> SearchResult:
    """Ask ``high`` (is the target reachable?), then ``low`` (is it met already?), then
    halve the bracket until it is ``resolution`` wide; each point with the sweep's
    replications (more with ``until_decisive``), run in parallel on ``executor``."""
    if spec.search is None or spec.target is None:
        raise ValueError("bisect needs a sweep with a target and a search")
    search, target = spec.search, spec.target
    tables: list[pd.DataFrame] = []
    verdicts: list[Verdict] = []

    def judge(value: Value) -> Verdict:
        records, found = decide(spec, ((search.parameter, value),), executor, store,
                                until_decisive, progress)
        tables.append(runs_table(records, spec.metrics))
        verdicts.append(found)
        return found

    low, high = search.low, search.high
    answer: Value | None = None
    top = judge(high)
    if top is not Verdict.MISSES:
        if top is Verdict.MEETS:
            answer = high
        if judge(low) is Verdict.MEETS:
            answer = low
        else:
            while high - low > search.resolution:
                middle = (low + high) // 2 if search.whole else (low + high) / 2
                if judge(middle) is Verdict.MEETS:
                    high = answer = middle
                else:          # misses, or not known to meet: the answer is above
                    low = middle
    runs = pd.concat(tables, ignore_index=True)
    steps = summary_table(runs, [search.parameter], spec.metrics)
    order = pd.DataFrame({search.parameter: [t[search.parameter].iloc[0] for t in tables],
                          "step": range(1, len(tables) + 1),
                          "verdict": [v.value for v in verdicts]})
    return SearchResult(search, target, answer, runs, steps.merge(order, on=search.parameter))


def answer_line(result: SearchResult) -> str:
    """The search's answer in one sentence, naming what stayed undecided."""
    search, target = result.search, result.target
    asked = f"({result.steps.step.nunique()} points, {len(result.runs)} runs)"
    undecided = ", ".join(str(v) for v in result.inconclusive)
    if result.answer is not None:
        line = (f"smallest {search.parameter} meeting {target} with 95% confidence: "
                f"{result.answer} {asked}")
        below = [v for v in result.inconclusive if v < result.answer]   # type: ignore[operator]
        if below:
            line += (f"; inconclusive below it: {', '.join(map(str, below))} (might also "
                     "meet: add replications with --until-decisive)")
        return line
    if result.out_of_reach:
        return (f"no {search.parameter} up to {search.high} meets {target}: {search.high} "
                f"misses it with 95% confidence {asked}")
    return (f"not decided: no {search.parameter} asked about meets {target} with 95% "
            f"confidence, and {undecided} stayed inconclusive (add replications with "
            f"--until-decisive) {asked}")
