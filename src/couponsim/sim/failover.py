"""Expected loss against replication lag: the same sale, its primary dying at the same
moment, behind replicas of different lags.

Each run has a store of its own (a FakeServer, a SQLite file in a temporary
directory), and every lag runs the same seeds (common random numbers), so the
lags differ by the lag, not by their luck.
"""

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import fakeredis
import pandas as pd

from couponsim.drivers.sync import SyncDriver
from couponsim.persistence.database import make_engine
from couponsim.persistence.repository import Repository
from couponsim.sim.run import simulate
from couponsim.sim.scenario import FailoverSpec, Scenario


def lag_table(scenario: Scenario, at_s: float, lags_ms: Sequence[float],
              replications: int = 1, arbiter: bool = True,
              distribution: str = "fixed") -> pd.DataFrame:
    """Mean per lag over ``replications`` seeds (scenario.seed, seed + 1, ...), one row
    per lag: coupons oversold and users over their limit (the checker, on the promoted
    store and the database), requests told ISSUED that ended with no coupon (lost),
    acknowledged requests the promoted store had no record of (forgotten), coupons
    taken back after an ISSUED (compensated), stored coupons the store never queued
    (unexpected), and the share of runs whose invariants all held.

    ``arbiter`` is the database's stock cap (``Repository(cap_at_stock=...)``): with it
    the excess is compensated rather than oversold.
    """
    rows = []
    for lag in lags_ms:
        for replication in range(replications):
            run = replace(scenario, seed=scenario.seed + replication,
                          failover=FailoverSpec(at_s, lag, distribution))
            rows.append({"replication_lag_ms": lag, **_measure(run, arbiter)})
    table = pd.DataFrame(rows).groupby("replication_lag_ms").mean()
    return table.rename(columns={"ok": "invariants_ok_share"})


def _measure(scenario: Scenario, arbiter: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="couponsim-failover-") as scratch:
        repository = Repository(make_engine(f"sqlite:///{Path(scratch) / 'run.sqlite'}"),
                                cap_at_stock=arbiter)
        try:
            repository.create_schema()
            client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
            outcome = simulate(scenario, SyncDriver(client, "fake://failover", repository))
        finally:
            repository.engine.dispose()
    report, failover = outcome.report, outcome.run.failover
    assert failover is not None, "the scenario has a failover"
    return {"oversold": report.oversold, "duplicates": len(report.duplicates),
            "lost": len(outcome.lost), "forgotten": len(failover.forgotten),
            "compensated": report.compensated, "unexpected": len(report.unexpected),
            "ok": float(report.ok)}
