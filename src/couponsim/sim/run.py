"""Run a scenario end to end: a fresh coupon in the store, the model, the checks."""

import time
from collections.abc import Callable

from couponsim.drivers.sync import SyncDriver
from couponsim.flows import lifecycle
from couponsim.sim.model import Model
from couponsim.sim.results import Outcome, judge_fairness, tables
from couponsim.sim.scenario import Scenario
from couponsim.verify import check_invariants, winners_in_order


def simulate(scenario: Scenario, driver: SyncDriver,
             progress: Callable[[int], None] | None = None) -> Outcome:
    """Clear the scenario's coupon, replay the scenario, judge what the store holds."""
    started = time.perf_counter()
    driver.run(lifecycle.purge(scenario.event.coupon_id, with_database=True))
    run = Model(scenario, driver, progress).simulate()
    report = driver.run(check_invariants(scenario.event.coupon_id, with_database=True))
    winners = driver.run(winners_in_order(scenario.event.coupon_id))
    requests, timeline, checkouts = tables(run)
    return Outcome(run, requests, timeline, report, judge_fairness(run, winners),
                   time.perf_counter() - started, checkouts)
