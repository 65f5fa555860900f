"""The planner's figure of one run: each panel answers one planning question.

In order: when did the stock sell out; how long did users wait for an answer and
for their coupon to be stored; how did users end; how far did the consumer queue
fall behind and how fast did it drain; and, when the scenario engages a gateway,
what the gateway decided over time. Each panel's title states what the run
shows; time axes are cut to the stretch where the panel's quantity moves (the
whole run is in ``timeline.csv``), and names and units come from
``couponsim.names``. Figures are made without pyplot, so drawing one from a
notebook or the CLI leaves the caller's backend alone.
"""

import textwrap
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from couponsim import names
from couponsim.flows.gateway import Path as GatewayPath
from couponsim.sim.records import START_MS
from couponsim.sim.results import Outcome, users_by_final_state
from couponsim.sim.traffic import Kind

BUCKET_S = 0.1
"""The timeline's sampling period: one row per 100 ms."""
QUANTILES = (0.50, 0.95, 0.99)
_TIME = str(names.metric("time_s"))


def figure(outcome: Outcome) -> Figure:
    """The planner's figure of ``outcome``: five panels, seven with a gateway, and the
    key numbers."""
    run = outcome.run
    scenario = run.scenario
    panels = [_sell_out, _answer_wait, _stored_wait, _outcome_mix, _queue]
    if run.gateway is not None:
        panels += [_gateway_decisions, _waiting_room]
    panels.append(_key_numbers)
    rows = (len(panels) + 1) // 2
    fig = Figure(figsize=(14, 4.2 * rows))
    axes = fig.subplots(rows, 2, squeeze=False).ravel()
    for draw, ax in zip(panels, axes, strict=False):
        draw(outcome, ax)
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    gateway = ("gateway engaged: rate limiter, circuit breaker, time limiter, waiting room"
               if run.gateway is not None else
               "no gateway in this scenario (gateway.enabled = false): no limiter, breaker "
               "or waiting room to show")
    fig.suptitle(f"{scenario.name} ({scenario.variant}): {scenario.traffic.users:,} users for "
                 f"{scenario.event.stock:,} coupons; one run, seed {scenario.seed}\n{gateway}",
                 fontsize=13)
    for ax in axes[:len(panels)]:
        ax.set_title(textwrap.fill(ax.get_title(), 62), fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))   # below the suptitle
    return fig


def _window(times: pd.Series, active: pd.Series, margin: float = 0.15) -> tuple[float, float]:
    """The time range where ``active`` holds, widened by ``margin`` of its span on each
    side (at least two samples), so a 0.1 s event is not a cliff on a 23 s axis."""
    moving = times[active]
    if moving.empty:
        return float(times.min()), float(times.max())
    low, high = float(moving.min()), float(moving.max())
    pad = max((high - low) * margin, 2 * BUCKET_S)
    return max(low - pad, float(times.min())), min(high + pad, float(times.max()))


def _sell_out(outcome: Outcome, ax: Any) -> None:
    timeline, stock = outcome.timeline, outcome.run.scenario.event.stock
    sold_out = timeline.loc[timeline.stock_left <= 0, "t_s"]
    taking = (timeline.stock_left.diff().fillna(0) != 0) | (
        (timeline.stock_left < stock) & (timeline.stock_left > 0))
    ax.plot(timeline.t_s, timeline.stock_left, color="tab:red", marker="o", linestyle="none",
            label=f"sampled every {BUCKET_S * 1000:g} ms")
    window = _window(timeline.t_s, taking)
    issued = _issued_at(outcome)
    if len(issued):
        left = stock - np.arange(1, len(issued) + 1)
        ax.step(np.concatenate([[window[0]], issued]), np.concatenate([[stock], left]),
                where="post", color="tab:red", label="as each ISSUED answer came")
        window = (min(window[0], float(issued[0]) - 2 * BUCKET_S),
                  max(window[1], float(issued[-1]) + 2 * BUCKET_S))
    ax.set_xlim(*window)
    ax.set_ylim(-0.03 * stock, 1.05 * stock)
    if sold_out.empty:
        title = (f"Stock did not sell out: {int(timeline.stock_left.iloc[-1]):,} of "
                 f"{stock:,} coupons left")
    else:
        at = float(sold_out.iloc[0])
        ax.axvline(at, color="black", linestyle=":", label=f"first empty sample, {at:.1f} s")
        title = f"When did the stock sell out? By {at:.1f} s (the first empty sample)"
        if len(issued) >= stock:
            last = float(issued[stock - 1])
            title = (f"When did the stock sell out? {last * 1000:,.0f} ms after 14:00:00 "
                     f"(the last ISSUED answer)")
    ax.set(title=title, xlabel=_TIME, ylabel=str(names.metric("stock_left")))
    ax.legend(loc="center right" if len(issued) else "lower left", fontsize=8,  # off the line
              title=str(names.metric("stock_left")), title_fontsize=8)
    ax.grid(alpha=0.3)


def _issued_at(outcome: Outcome) -> np.ndarray:
    """When each ISSUED answer came back (s), in order, for a run without a gateway:
    there each one took a unit of stock at once, so the stock's curve is exact rather
    than sampled. Behind a gateway the room issues on admission, which no answer
    tells, so only the samples show the stock."""
    if outcome.run.gateway is not None:
        return np.array([])
    requests = outcome.requests[outcome.requests.answer == "ISSUED"]
    return np.sort((requests.arrival_s + requests.answer_ms / 1000).to_numpy())


def _answer_wait(outcome: Outcome, ax: Any) -> None:
    """Percentile bars per path, each labelled with its value: a 0 ms bar is still read."""
    answered = outcome.requests.dropna(subset=["answer_ms"])
    quantiles = answered.groupby("path").answer_ms.quantile(list(QUANTILES)).unstack()
    counts = answered.path.value_counts()
    quantiles = quantiles.loc[counts.index.intersection(quantiles.index)]
    quantiles.index = [f"{names.path(p)}\n({counts[p]:,} requests)" for p in quantiles.index]
    height = 0.8 / len(QUANTILES)
    positions = np.arange(len(quantiles))
    for n, q in enumerate(QUANTILES):
        values = quantiles[q].to_numpy()
        bars = ax.barh(positions + (n - 1) * height, values, height, label=f"p{q * 100:g}")
        ax.bar_label(bars, labels=[f"{v:,.1f} ms" for v in values], fontsize=7, padding=2)
    ax.set_yticks(positions, quantiles.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(quantiles.to_numpy().max()) * 1.3, 1.0))
    overall = float(answered.answer_ms.quantile(0.99))
    ax.set(title=f"How long until the first answer? p99 {overall:,.1f} ms over all requests",
           xlabel=str(names.metric("answer_ms")), ylabel="path through the service")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _stored_wait(outcome: Outcome, ax: Any) -> None:
    """The distribution of the winners' waits, cut at p99 x 1.2 so the bulk fills the axis."""
    requests = outcome.requests
    waits = requests.loc[requests.final_state == "COMPLETED", "status_ms"].dropna() / 1000
    label = str(names.metric("stored_s"))
    if waits.empty:
        ax.text(0.5, 0.5, "no coupon was stored in this run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set(title="How long until the coupon was stored? No coupon was stored",
               xlabel=label)
        return
    marks = {q: float(waits.quantile(q)) for q in QUANTILES}
    cut = marks[0.99] * 1.2 or 1.0
    start = float(waits.min()) * 0.9
    beyond = int((waits > cut).sum())
    ax.hist(waits.clip(upper=cut), bins=40, range=(start, cut), color="tab:green", alpha=0.7,
            label=f"{len(waits):,} requests with a stored coupon"
                  + (f" ({beyond:,} beyond {cut:.2f} s, in the last bar)" if beyond else ""))
    for (q, value), style in zip(marks.items(), ("-", "--", ":"), strict=True):
        ax.axvline(value, color="black", linestyle=style, label=f"p{q * 100:g} {value:.2f} s")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.5)     # headroom: the legend covers no bar
    ax.set(title=f"How long from press to coupon stored? p99 {marks[0.99]:.2f} s",
           xlabel=label, ylabel="requests")
    ax.legend(fontsize=8)


def _outcome_mix(outcome: Outcome, ax: Any) -> None:
    people = outcome.requests[outcome.requests.kind != Kind.BOT.value]
    mix = pd.Series(users_by_final_state(people)).sort_values()
    total = int(mix.sum())
    bars = ax.barh([names.outcome(state) for state in mix.index], mix.to_numpy(),
                   color="tab:blue")
    ax.bar_label(bars, labels=[f"{n:,} ({n / total:.1%})" for n in mix], fontsize=8, padding=2)
    ax.set_xlim(0, float(mix.max()) * 1.3)
    stored = int(mix.get("COMPLETED", 0))
    ax.set(title=f"How did the {total:,} users end? {stored:,} hold a stored coupon",
           xlabel="users (each counted once, by their best request)")
    ax.grid(axis="x", alpha=0.3)


def _queue(outcome: Outcome, ax: Any) -> None:
    """Backlog on the left axis; drain rate on the right: the stock units taken in a
    sample minus the backlog's growth, i.e. the entries consumers finished."""
    timeline = outcome.timeline
    taken = (-timeline.stock_left.diff()).clip(lower=0).fillna(0)
    drained = (taken - timeline.backlog.diff().fillna(0)).clip(lower=0) / BUCKET_S
    ax.plot(timeline.t_s, timeline.backlog, color="tab:purple",
            label=str(names.metric("backlog")))
    ax.set_ylabel(str(names.metric("backlog")), color="tab:purple")
    twin = ax.twinx()
    twin.plot(timeline.t_s, drained, color="tab:orange", alpha=0.8,
              label=str(names.metric("drained_per_s")))
    twin.set_ylabel(str(names.metric("drained_per_s")), color="tab:orange")
    ax.set_xlim(*_window(timeline.t_s, (timeline.backlog > 0) | (drained > 0)))
    ax.set_ylim(0, max(float(timeline.backlog.max()), 1.0) * 1.5)   # headroom for the legend
    twin.set_ylim(0, max(float(drained.max()), 1.0) * 1.5)
    peak = int(timeline.backlog.max())
    if peak == 0:
        title = "Did the consumers keep up? The queue never held an entry at a sample"
    else:
        peak_at = float(timeline.t_s[timeline.backlog.idxmax()])
        last = float(timeline.t_s[timeline.backlog > 0].max())
        drained_at = (f"empty for good from {last + BUCKET_S:.1f} s"
                      if int(timeline.backlog.iloc[-1]) == 0 else "not drained at the end")
        title = (f"Did the consumers keep up? Backlog peaked at {peak:,} at {peak_at:.1f} s, "
                 f"{drained_at}")
    ax.set(title=title, xlabel=_TIME)
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)


_BREAKER_COLOURS = {"OPEN": "tab:red", "HALF_OPEN": "tab:orange", "FORCED_OPEN": "tab:red"}


def _gateway_decisions(outcome: Outcome, ax: Any) -> None:
    """Requests per second by the gateway's decision, with the breaker's non-CLOSED
    stretches shaded; log scale, as the refused crowd outnumbers the admitted by orders."""
    requests = outcome.requests[outcome.requests.path != ""]
    timeline = outcome.timeline
    bins = np.arange(float(timeline.t_s.min()), float(timeline.t_s.max()) + BUCKET_S, BUCKET_S)
    for path, group in requests.groupby("path"):
        counts, edges = np.histogram(group.arrival_s, bins=bins)
        if counts.sum():
            ax.step(edges[:-1], np.where(counts > 0, counts / BUCKET_S, np.nan), where="post",
                    label=f"{names.path(str(path))} ({len(group):,})")
    states = timeline.breaker
    changes = states.ne(states.shift()).cumsum()
    shaded: set[str] = set()
    for _, stretch in timeline.groupby(changes):
        state = str(stretch.breaker.iloc[0])
        if state in _BREAKER_COLOURS:
            ax.axvspan(float(stretch.t_s.iloc[0]), float(stretch.t_s.iloc[-1]) + BUCKET_S,
                       color=_BREAKER_COLOURS[state], alpha=0.15,
                       label=None if state in shaded else f"breaker {state}")
            shaded.add(state)
    limited = int((requests.path == GatewayPath.LIMITED.value).sum())
    not_closed = states.isin(list(_BREAKER_COLOURS))
    if shaded:
        first = float(timeline.t_s[not_closed].min())
        breaker = (f"breaker not CLOSED for {BUCKET_S * int(not_closed.sum()):.1f} s, "
                   f"first at {first:.1f} s")
    else:
        breaker = ("breaker CLOSED throughout" if outcome.run.scenario.service.instances else
                   "breaker CLOSED throughout (service.instances = 0: instances not modelled)")
    moments = pd.concat([requests.arrival_s, timeline.t_s[not_closed]], ignore_index=True)
    ax.set_xlim(*_window(moments, moments.notna(), margin=0.05))
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 30)         # headroom: the legend covers no line
    ax.set(title=f"What did the gateway decide? Limiter refused {limited:,}; {breaker}",
           xlabel=_TIME, ylabel=f"{names.metric('requests_per_s')}, log scale")
    ax.legend(fontsize=7, loc="upper right", title="arrivals by decision (total)",
              title_fontsize=7)
    ax.grid(alpha=0.3)


def _waiting_room(outcome: Outcome, ax: Any) -> None:
    timeline, run = outcome.timeline, outcome.run
    ax.plot(timeline.t_s, timeline.room, color="tab:blue", label=str(names.metric("room")))
    ax.set_ylabel(str(names.metric("room")), color="tab:blue")
    twin = ax.twinx()
    admitted = pd.DataFrame(run.admissions, columns=["at_ms", "users"])
    admitted["t_s"] = (admitted.at_ms - START_MS) / 1000
    interval = run.scenario.gateway.admission_interval_s
    twin.step(admitted.t_s, admitted.users / interval, where="post", color="tab:green",
              label=str(names.metric("admitted_per_s")))
    twin.set_ylabel(str(names.metric("admitted_per_s")), color="tab:green")
    twin.set_ylim(0, max(float((admitted.users / interval).max()), 1.0) * 1.4)
    ax.set_ylim(0, max(float(timeline.room.max()), 1.0) * 1.25)
    ax.set_xlim(*_window(timeline.t_s, timeline.room > 0))
    peak = int(timeline.room.max())
    ax.set(title=f"Waiting room: peaked at {peak:,} users; {int(admitted.users.sum()):,} "
                 f"admitted in {len(admitted):,} rounds", xlabel=_TIME)
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)


def _key_numbers(outcome: Outcome, ax: Any) -> None:
    """The summary's planning numbers, named as everywhere else, with what each measures."""
    summary = outcome.summary
    stored = summary["coupon_stored_latency_ms"] or {}
    lines = [
        (names.metric("sell_out_s"), summary["sell_out_s"]),
        (names.metric("last_arrival_s"), summary["last_arrival_s"]),
        (names.metric("last_stored_s"), summary["last_stored_s"]),
        (names.metric("all_final_s"), summary["all_final_s"]),
        (names.metric("p99_stored_s"),
         None if not stored else round(stored["p99"] / 1000, 2)),
        (names.metric("p99_answer_ms"),
         round(float(outcome.requests.answer_ms.quantile(0.99)), 1)),
    ]
    text = [f"{name.label}: {'-' if value is None else value} {name.unit}"
            for name, value in lines]
    text += ["", f"invariants on Redis and the database: "
                 f"{'all hold' if summary['invariants_ok'] else 'BROKEN'}",
             "", textwrap.fill(f"{names.metric('all_final_s').label}: "
                               f"{names.metric('all_final_s').meaning}.", 70)]
    ax.axis("off")
    ax.text(0, 1, "\n".join(text), va="top", ha="left", fontsize=9, family="monospace",
            transform=ax.transAxes)
    ax.set_title("Key numbers of this run (summary.json)")
