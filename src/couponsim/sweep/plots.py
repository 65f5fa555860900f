"""Plots a capacity planner reads: a metric against a parameter, each point with its
95% interval and the number of runs it rests on, the target line and the value
chosen; names and units from ``couponsim.names``."""

import textwrap
from typing import Any

import pandas as pd

from couponsim import names
from couponsim.sweep.search import SearchResult
from couponsim.sweep.spec import Target, Value
from couponsim.sweep.stats import Verdict

_VERDICT_STYLE = {Verdict.MEETS.value: ("tab:green", "o"),
                  Verdict.MISSES.value: ("tab:red", "X"),
                  Verdict.INCONCLUSIVE.value: ("tab:orange", "s")}


def parameter_label(parameter: str) -> str:
    """``latency.network_ms`` -> ``one-way network latency (ms)``."""
    return str(names.parameter(parameter))


def target_text(target: Target) -> str:
    """``p99_stored_s <= 8`` as people read it: ``p99 wait from press to coupon stored
    <= 8 s``."""
    name = names.metric(target.metric)
    return f"{name.label} {target.comparison} {target.value:g} {name.unit}".rstrip()


def _runs_text(rows: pd.DataFrame) -> str:
    counts = sorted(set(int(n) for n in rows.runs))
    return (f"{counts[0]} runs per point" if len(counts) == 1
            else f"{counts[0]} to {counts[-1]} runs per point")


def metric_plot(summary: pd.DataFrame, parameter: str, metric: str,
                target: Target | None = None, chosen: Value | None = None,
                ax: Any = None) -> Any:
    """``metric`` against ``parameter`` from a summary table: the mean with its 95%
    interval as error bars and band, one line per combination of the other parameters,
    each point labelled with its number of runs; the target's line when it is about
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
        suffix = f" ({name})" if name else ""
        below = (group["mean"] - group.ci_low).fillna(0)
        above = (group.ci_high - group["mean"]).fillna(0)
        bars = ax.errorbar(group[parameter], group["mean"], yerr=[below, above], marker="o",
                           capsize=4, label=f"mean, 95% interval{suffix}")
        colour = bars.lines[0].get_color()
        ax.fill_between(group[parameter], group.ci_low, group.ci_high, alpha=0.15,
                        color=colour, label=f"95% confidence band{suffix}")
        for _, row in group.iterrows():
            ax.annotate(f"n={int(row.runs)}", (row[parameter], row["mean"]), fontsize=7,
                        textcoords="offset points", xytext=(5, -10), color=colour)
    if target is not None and target.metric == metric:
        ax.axhline(target.value, color="tab:red", linestyle="--",
                   label=f"target: {target_text(target)}")
    if chosen is not None:
        ax.axvline(chosen, color="tab:green", linestyle=":",
                   label=f"chosen: {names.parameter(parameter).label} = {chosen}")
    metric_name = names.metric(metric)
    ax.set(xlabel=parameter_label(parameter), ylabel=str(metric_name),
           title=textwrap.fill(f"What does the {names.parameter(parameter).label} do to the "
                               f"{metric_name.label}? ({_runs_text(rows)})", 60))
    ax.margins(x=0.08)                # room for the last point's n= label
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def search_plot(result: SearchResult, ax: Any = None) -> Any:
    """The points the bisection asked about, in order: each with its 95% interval,
    coloured by its verdict, labelled with its step and runs; the target and the
    answer."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    parameter, target = result.search.parameter, result.target
    rows = result.steps[result.steps.metric == target.metric].sort_values("step")
    for verdict, (colour, marker) in _VERDICT_STYLE.items():
        chosen = rows[rows.verdict == verdict]
        if chosen.empty:
            continue
        below = (chosen["mean"] - chosen.ci_low).fillna(0)
        above = (chosen.ci_high - chosen["mean"]).fillna(0)
        ax.errorbar(chosen[parameter], chosen["mean"], yerr=[below, above], fmt=marker,
                    color=colour, capsize=5, markersize=8, linestyle="none",
                    label=f"{verdict} (mean, 95% interval)")
    for _, row in rows.iterrows():
        ax.annotate(f"step {row.step}, n={int(row.runs)}", (row[parameter], row["mean"]),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axhline(target.value, color="tab:red", linestyle="--",
               label=f"target: {target_text(target)}")
    if result.answer is not None:
        ax.axvline(result.answer, color="tab:green", linestyle=":",
                   label=f"answer: {names.parameter(parameter).label} = {result.answer}")
    span = result.search.high - result.search.low
    ax.set_xlim(result.search.low - 0.05 * span, result.search.high + 0.1 * span)
    found = (f"smallest meeting it: {result.answer}" if result.answer is not None
             else "none meets it with confidence"
             + (f"; inconclusive: {', '.join(map(str, result.inconclusive))}"
                if result.inconclusive else ""))
    ax.set(xlabel=parameter_label(parameter), ylabel=str(names.metric(target.metric)),
           title=textwrap.fill(f"Search: smallest {names.parameter(parameter).label} with "
                               f"{target_text(target)} (95% confidence)? {found}", 70))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
