"""The mode table of issue #11: what each deployment keeps when Redis fails.

Rows: one Redis that never fails; a cluster whose coupon master is SIGKILLed
while its replica lags (see couponsim.failover), with Redis alone, with
``WAIT 1`` after every issue script, with the database as final arbiter (a
stock cap at persist time), and with both; one Redis SIGKILLed and restarted
with no persistence, AOF everysec and AOF always. Columns: oversold and
duplicate coupons in the database, acknowledged issues lost, issues the
arbiter took back after telling the user ISSUED, and one client's issue rate
before the failure. Every server is the script's own, on free ports.

    python benchmarks/failover_modes.py [--stock 150 --users 300]
"""

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from couponsim import failover
from couponsim.persistence.repository import Repository

WAIT = (1, 50)
"""WAIT 1 50: one replica, 50 ms; a lagging replica makes each issue time out."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock", type=int, default=150)
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    plan = failover.Plan(args.stock, args.users)
    modes: list[tuple[bool, Callable[[Path, Repository], failover.Outcome]]] = [
        (False, lambda d, r: failover.single_baseline(d, r, plan)),
        (False, lambda d, r: failover.cluster_failover(d, r, plan, mode="cluster failover")),
        (False, lambda d, r: failover.cluster_failover(d, r, plan, WAIT,
                                                       "cluster failover + WAIT 1 50")),
        (True, lambda d, r: failover.cluster_failover(d, r, plan,
                                                      mode="cluster failover + DB arbiter")),
        (True, lambda d, r: failover.cluster_failover(d, r, plan, WAIT,
                                                      "cluster failover + WAIT + DB arbiter")),
        *((False, lambda d, r, p=p: failover.restart(d, r, p, plan))
          for p in failover.PERSISTENCE),
    ]
    print(f"{'mode':<46}{'oversold':>9}{'dupes':>7}{'lost':>6}{'taken back':>11}"
          f"{'issues/s':>10}  checker")
    with tempfile.TemporaryDirectory() as scratch:
        for n, (cap, run) in enumerate(modes):
            repository = Repository.from_url(f"sqlite:///{scratch}/{n}.sqlite")
            repository.cap_at_stock = cap
            o = run(Path(scratch) / str(n), repository)
            verdict = ("event forgotten" if o.report is None else
                       "ok" if o.report.ok else
                       ", ".join(c.name.split(" (")[0] for c in o.report.checks if not c.ok))
            print(f"{o.mode:<46}{o.oversold:>9}{o.duplicates:>7}{o.lost:>6}{o.compensated:>11}"
                  f"{o.issue_rate:>10,.0f}  {verdict}")


if __name__ == "__main__":
    main()
