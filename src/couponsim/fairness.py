"""How far the order of winners departs from the order of arrival.

Measured, not asserted: a waiting room that lets late arrivals overtake
earlier ones shows it here. Computed from recorded arrivals and outcomes only.
"""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fairness:
    early_share: float
    """Share of the first ``stock`` arrivals who won (1.0: first come, first served)."""
    overtaken: int
    """Users among the first ``stock`` arrivals who did not win while a later one did."""
    rank_correlation: float | None
    """Spearman correlation of arrival rank and winning rank among winners (1.0: same
    order); None with fewer than two winners."""


def fairness(arrivals: Sequence[str], winners: Sequence[str], stock: int) -> Fairness:
    """``arrivals``: users in order of arrival (first arrival counts); ``winners``: users
    in the order they won."""
    arrival_rank: dict[str, int] = {}
    for user in arrivals:
        arrival_rank.setdefault(user, len(arrival_rank))
    first = set(list(arrival_rank)[:stock])
    won = set(winners)
    early = len(first & won)
    latest_winner = max((arrival_rank[user] for user in won), default=-1)
    overtaken = sum(1 for user in first - won if arrival_rank[user] < latest_winner)
    return Fairness(early / max(1, min(stock, len(arrival_rank))), overtaken,
                    _spearman([arrival_rank[user] for user in winners]))


def _spearman(arrival_ranks: list[int]) -> float | None:
    """Spearman's rho between winning order (0, 1, 2...) and the winners' arrival ranks."""
    n = len(arrival_ranks)
    if n < 2:
        return None
    order = {rank: position for position, rank in enumerate(sorted(arrival_ranks))}
    squared = sum((position - order[rank]) ** 2 for position, rank in enumerate(arrival_ranks))
    return 1 - 6 * squared / (n * (n * n - 1))
