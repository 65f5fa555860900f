"""Tables of a sweep: one row per run, and per point the mean with its 95% interval.

Both are tidy (one observation per row) so pandas, a spreadsheet or a plot can
take them as they are. The per-run table holds nothing that depends on the
machine (no wall times), so the same sweep gives the same table anywhere.
"""

from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from couponsim.confidence import Interval, confidence_interval
from couponsim.sweep.spec import Target

SUMMARY_COLUMNS = ["metric", "runs", "mean", "ci_low", "ci_high", "invariants_ok"]


def runs_table(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per run: the point's parameters, replication, seed, whether every
    invariant held (and which did not), then the metrics; missing metrics are NaN."""
    rows = [{**dict(map(tuple, record["point"])), "replication": record["replication"],
             "seed": record["seed"], "invariants_ok": record["invariants_ok"],
             "broken": ", ".join(record["broken"]),
             **{metric: record["metrics"][metric] for metric in metrics}}
            for record in records]
    table = pd.DataFrame(rows)
    table[list(metrics)] = table[list(metrics)].astype(float)
    return table


def interval(values: pd.Series) -> Interval | None:
    """The 95% t interval over the replications that have the metric; None below two."""
    present = [float(v) for v in values.dropna()]
    return confidence_interval(present) if len(present) >= 2 else None


def summary_table(runs: pd.DataFrame, parameters: list[str],
                  metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per point and metric: runs with a value, mean and 95% interval, and whether the
    invariants held in every run of the point. Points keep the order they ran in."""
    rows = []
    for values, group in runs.groupby(parameters, sort=False) if parameters else [((), runs)]:
        point = dict(zip(parameters, values if isinstance(values, tuple) else (values,),
                         strict=True))
        for metric in metrics:
            found = interval(group[metric])
            rows.append({**point, "metric": metric, "runs": int(group[metric].notna().sum()),
                         "mean": found.mean if found else group[metric].mean(),
                         "ci_low": found.low if found else np.nan,
                         "ci_high": found.high if found else np.nan,
                         "invariants_ok": bool(group.invariants_ok.all())})
    return pd.DataFrame(rows, columns=[*parameters, *SUMMARY_COLUMNS])


class Verdict(StrEnum):
    """What the runs of one point say about a target, at 95% confidence."""

    MEETS = "meets"
    """The whole interval is on the target's side."""
    MISSES = "misses"
    """The whole interval is on the other side."""
    INCONCLUSIVE = "inconclusive"
    """The interval straddles the target (or fewer than two runs have the metric):
    more replications may decide it."""


def verdict(runs: pd.DataFrame, target: Target) -> Verdict:
    """The runs of one point against the target."""
    found = interval(runs[target.metric])
    if found is None:
        return Verdict.INCONCLUSIVE
    if target.met_by(found):
        return Verdict.MEETS
    return Verdict.MISSES if target.missed_by(found) else Verdict.INCONCLUSIVE

