"""What one run measures, by name: the numbers a sweep collects and a target names.

Each metric's label and unit come from the one registry of names
(``couponsim.names``), so the sweep's tables and plots say a number as the run's
summary and figures do. A metric a run cannot have (no sell-out when stock
outlasts the users) is None, which the tables keep as missing, not as zero.
"""

from collections.abc import Callable

import pandas as pd

from couponsim import names
from couponsim.sim.results import Outcome, users_by_final_state


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


METRICS: dict[str, Callable[[Outcome], float | None]] = {
    "p50_status_s": lambda o: _quantile(o.requests.status_ms, 0.50, 1000),
    "p99_status_s": lambda o: _quantile(o.requests.status_ms, 0.99, 1000),
    "p99_stored_s": lambda o: _quantile(_stored(o), 0.99, 1000),
    "p99_answer_ms": lambda o: _quantile(o.requests.answer_ms, 0.99),
    "sell_out_s": _sell_out,
    "all_final_s": lambda o: float(o.requests.final_s.max()),
    "users_completed": _users("COMPLETED"),
    "users_gave_up": _users("GAVE_UP"),
    "rank_correlation": lambda o: o.fairness.rank_correlation,
}


def measure(outcome: Outcome) -> dict[str, float | None]:
    """Every metric of one run: cheap next to the run, and a stored run then answers any
    later sweep that asks for another metric."""
    return {name: measured(outcome) for name, measured in METRICS.items()}


def label(metric: str) -> str:
    """An axis label with its unit: ``p99 wait from press to final status (s)``."""
    return str(names.metric(metric))
