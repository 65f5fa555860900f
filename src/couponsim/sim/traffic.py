"""Who presses the button, and when: the clicks of a scenario, drawn before the run.

Drawing every arrival up front (vectorised, from the scenario's own streams)
keeps the model's loop about behaviour only, and makes the plan itself
reproducible and testable. Reactions (pressing again before the start, retrying
after a timeout, leaving the waiting room) depend on what happens, so the model
decides them as they happen.
"""

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from couponsim.sim.scenario import TrafficSpec

EARLY_WINDOW_MS = 5_000.0
"""Early users press up to this long before the start."""
BOT_LEAD_MS = 1_000.0
"""Bots start hammering up to this long before the start."""


class Kind(StrEnum):
    """Why a request was sent."""

    FIRST = "first click"
    DOUBLE = "double click"
    AGAIN_EARLY = "again, too early"
    RETRY = "retry"
    BOT = "bot"


@dataclass(frozen=True, slots=True)   # slots: a Story 2 plans about 525,000 of them
class Click:
    at_ms: float
    """From the start (negative: before it)."""
    user: str
    request: str
    kind: Kind


def plan(traffic: TrafficSpec, arrivals: np.random.Generator,
         clicks: np.random.Generator) -> list[Click]:
    """Every planned click, in order of time (ties in order of drawing).

    The spike is exponential after the start; ``early_share`` press up to 5 s
    before it; of the others, ``ramp_share`` come on a linear ramp (arrival rate
    rising steadily over ``ramp_s``: the time is ``ramp_s * sqrt(U)``). The draws
    for the original spike come first, so adding a ramp or bots leaves them as
    they were.
    """
    users = traffic.users
    early = arrivals.random(users) < traffic.early_share
    offsets = np.where(early, -arrivals.uniform(0, EARLY_WINDOW_MS, users),
                       arrivals.exponential(traffic.spread_s * 1000, users))
    double = clicks.random(users) < traffic.double_click_share
    delays = clicks.uniform(0, traffic.double_click_within_ms, users)
    if traffic.ramp_share:
        ramp = ~early & (arrivals.random(users) < traffic.ramp_share)
        offsets = np.where(ramp, traffic.ramp_s * 1000 * np.sqrt(arrivals.random(users)),
                           offsets)
    planned = []
    for n in range(users):
        planned.append(Click(float(offsets[n]), f"u{n}", f"r{n}", Kind.FIRST))
        if double[n]:
            planned.append(Click(float(offsets[n] + delays[n]), f"u{n}", f"r{n}b",
                                 Kind.DOUBLE))
    if traffic.bots:
        starts = -arrivals.uniform(0, BOT_LEAD_MS, traffic.bots)
        planned += [Click(float(starts[b] + k * traffic.bot_interval_ms), f"bot{b}",
                          f"bot{b}-{k}", Kind.BOT)
                    for b in range(traffic.bots) for k in range(traffic.bot_requests)]
    return sorted(planned, key=lambda click: click.at_ms)
