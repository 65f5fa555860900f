"""The 95% t interval of a mean over independent replications.

Shared by the model's validation against queueing theory (``sim.validation``)
and by sweeps (``sweep.stats``): one simulated number is never trusted alone.
A table of Student's t keeps scipy out of the dependencies for one quantile.
"""

from dataclasses import dataclass
from statistics import fmean, stdev

from couponsim.errors import InvalidInput

# Student's t, 97.5th percentile, by degrees of freedom: the two-sided 95% interval.
_T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
          9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
          16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042,
          40: 2.021, 60: 2.000, 120: 1.980}


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high


def t_975(degrees_of_freedom: int) -> float:
    """t's 97.5th percentile; between (and past) tabled values the lower df is used,
    which gives a slightly wider interval, never a narrower one."""
    return _T_975[max(k for k in _T_975 if k <= degrees_of_freedom)]


def confidence_interval(samples: list[float]) -> Interval:
    """The 95% t interval of the mean of independent replications."""
    if len(samples) < 2:
        raise InvalidInput("a confidence interval needs at least two replications")
    mean = fmean(samples)
    half = t_975(len(samples) - 1) * stdev(samples) / len(samples) ** 0.5
    return Interval(mean, mean - half, mean + half)
