"""Plots a capacity planner reads: a metric against a parameter, with its 95% band,
the target line and the value chosen, every axis with its unit."""

from typing import Any

import pandas as pd

from couponsim.sweep.metrics import label
from couponsim.sweep.search import SearchResult
from couponsim.sweep.spec import Target, Value

_UNITS = (("_per_s", "per s"), ("_ms", "ms"), ("_s", "s"), ("_share", "share"))


def parameter_label(parameter: str) -> str:
    """``latency.network_ms`` -> ``latency.network_ms (ms)``: scenario fields carry their
    unit in their name; a plain count says what it counts."""
    for suffix, unit in _UNITS:
        if parameter.endswith(suffix):
            return f"{parameter} ({unit})"
    return f"{parameter} ({parameter.split('.')[0]})" if parameter.endswith(".count") \
        else parameter


def metric_plot(summary: pd.DataFrame, parameter: str, metric: str,
                target: Target | None = None, chosen: Value | None = None,
                ax: Any = None) -> Any:
    """``metric`` against ``parameter`` from a summary table: the mean, its 95% band, one
    line per combination of the other parameters; the target's line when it is about
    this metric, and the chosen value. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    rows = summary[summary.metric == metric]
    others = [c for c in summary.columns[:summary.columns.get_loc("metric")] if c != parameter]
    groups = rows.groupby(others, sort=False) if others else [((), rows)]
    for values, group in groups:
        group = group.sort_values(parameter)
        name = ", ".join(f"{o}={v}" for o, v in zip(
            others, values if isinstance(values, tuple) else (values,), strict=True))
        line, = ax.plot(group[parameter], group["mean"], marker="o",
                        label=f"mean{f' ({name})' if name else ''}")
        ax.fill_between(group[parameter], group.ci_low, group.ci_high, alpha=0.25,
                        color=line.get_color(),
                        label=f"95% confidence band{f' ({name})' if name else ''}")
    if target is not None and target.metric == metric:
        ax.axhline(target.value, color="tab:red", linestyle="--", label=f"target {target}")
    if chosen is not None:
        ax.axvline(chosen, color="tab:green", linestyle=":",
                   label=f"chosen {parameter} = {chosen}")
    ax.set(xlabel=parameter_label(parameter), ylabel=label(metric),
           title=f"{label(metric)} by {parameter}")
    ax.legend()
    return ax


def search_plot(result: SearchResult, ax: Any = None) -> Any:
    """The points the bisection asked about, each with its band, and the answer."""
    ax = metric_plot(result.steps, result.search.parameter, result.target.metric,
                     result.target, result.answer, ax)
    for _, row in result.steps[result.steps.metric == result.target.metric].iterrows():
        ax.annotate(f"step {row.step}", (row[result.search.parameter], row["mean"]),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_title(f"Search: smallest {result.search.parameter} with {result.target} "
                 f"(95% confidence)")
    return ax
