"""What one run measures, by name: the numbers a sweep collects and a target names.

Each metric carries its label and unit, so tables and plots say what a number
is without a second lookup. A metric a run cannot have (no sell-out when stock
outlasts the users) is None, which the tables keep as missing, not as zero.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from couponsim.sim.results import Outcome, users_by_final_state


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    measure: Callable[[Outcome], float | None]


def _quantile(values: pd.Series, q: float, scale: float = 1.0) -> float | None:
    values = values.dropna()
    return None if values.empty else float(values.quantile(q)) / scale


def _stored(outcome: Outcome) -> pd.Series:
    """Time (ms) from a click to its coupon's COMPLETED status, for the clicks that won."""
    requests = outcome.requests
    return requests.loc[requests.final_state == "COMPLETED", "status_ms"]


def _sell_out(outcome: Outcome) -> float | None:
    sold_out = outcome.timeline.loc[outcome.timeline.stock_left <= 0, "t_s"]
    return None if sold_out.empty else float(sold_out.iloc[0])


def _users(state: str) -> Callable[[Outcome], float | None]:
    return lambda outcome: float(users_by_final_state(outcome.requests).get(state, 0))


METRICS: dict[str, Metric] = {
    "p50_status_s": Metric("median time to a final status", "s",
                           lambda o: _quantile(o.requests.status_ms, 0.50, 1000)),
    "p99_status_s": Metric("p99 time to a final status", "s",
                           lambda o: _quantile(o.requests.status_ms, 0.99, 1000)),
    "p99_stored_s": Metric("p99 time until the coupon is stored", "s",
                           lambda o: _quantile(_stored(o), 0.99, 1000)),
    "p99_answer_ms": Metric("p99 time to the first answer", "ms",
                            lambda o: _quantile(o.requests.answer_ms, 0.99)),
    "sell_out_s": Metric("sold out after 14:00:00", "s", _sell_out),
    "all_final_s": Metric("every status final after 14:00:00", "s",
                          lambda o: float(o.requests.final_s.max())),
    "users_completed": Metric("users holding a stored coupon", "users", _users("COMPLETED")),
    "users_gave_up": Metric("users who gave up waiting", "users", _users("GAVE_UP")),
    "rank_correlation": Metric("rank correlation of arrival and winning order", "",
                               lambda o: o.fairness.rank_correlation),
}


def measure(outcome: Outcome) -> dict[str, float | None]:
    """Every metric of one run: cheap next to the run, and a stored run then answers any
    later sweep that asks for another metric."""
    return {name: metric.measure(outcome) for name, metric in METRICS.items()}


def label(metric: str) -> str:
    """An axis label with its unit: ``p99 time to a final status (s)``."""
    found = METRICS[metric]
    return f"{found.label} ({found.unit})" if found.unit else found.label
