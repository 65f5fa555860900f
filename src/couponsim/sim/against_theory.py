"""The model's Redis queue against closed-form queueing results, as one table.

Each case is a queue with a textbook answer (M/M/1, M/M/c, M/D/1); the model's
mean wait in queue over independent replications gives a 95% interval, which a
correct model holds the textbook value in, 19 times in 20.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from couponsim.sim.validation import replicate
from couponsim.theory import md1_wait, mmc_wait


@dataclass(frozen=True)
class Case:
    name: str
    arrival_rate_per_ms: float
    service_ms: float
    servers: int = 1
    exponential_service: bool = True
    """False: every request takes exactly ``service_ms`` (M/D/1)."""

    @property
    def utilisation(self) -> float:
        return self.arrival_rate_per_ms * self.service_ms / self.servers

    @property
    def theory_ms(self) -> float:
        """The closed-form mean wait in queue (ms)."""
        if self.exponential_service:
            return mmc_wait(self.arrival_rate_per_ms, 1 / self.service_ms, self.servers)
        return md1_wait(self.arrival_rate_per_ms, self.service_ms)


def against_theory(cases: Sequence[Case], requests: int, replications: int,
                   seed: int = 1) -> pd.DataFrame:
    """Per case: utilisation, the closed form, the model's mean and 95% interval (ms),
    and whether the interval holds the closed form."""
    rows = []
    for case in cases:
        interval = replicate(case.arrival_rate_per_ms, case.service_ms, case.servers,
                             requests, replications, seed, case.exponential_service)
        rows.append({"case": case.name, "utilisation": case.utilisation,
                     "theory_ms": case.theory_ms, "model_ms": interval.mean,
                     "low_ms": interval.low, "high_ms": interval.high,
                     "holds_theory": case.theory_ms in interval})
    return pd.DataFrame(rows).set_index("case")
