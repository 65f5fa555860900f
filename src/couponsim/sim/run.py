"""Run a scenario end to end: a fresh coupon in the store, the model, the checks."""

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from couponsim.drivers.sync import SyncDriver
from couponsim.flows import lifecycle
from couponsim.flows.issue import IssueOutcome
from couponsim.sim.model import Model
from couponsim.sim.records import Run
from couponsim.sim.results import Outcome, judge_fairness, tables
from couponsim.sim.scenario import Scenario
from couponsim.verify import check_invariants, winners_in_order


def simulate(scenario: Scenario, driver: SyncDriver,
             progress: Callable[[int], None] | None = None) -> Outcome:
    """Clear the scenario's coupon, replay the scenario, judge what the store holds.

    After a failover the store judged is the promoted replica, the one the
    system goes on with; ``driver`` is left holding the dead primary's.
    """
    started = time.perf_counter()
    model = Model(scenario, driver, progress)
    driver.run(lifecycle.purge(scenario.event.coupon_id, with_database=True))
    with _rare_collections():
        run = model.simulate()
    store = model.driver
    report = store.run(check_invariants(scenario.event.coupon_id, with_database=True))
    winners = store.run(winners_in_order(scenario.event.coupon_id))
    requests, timeline, checkouts = tables(run)
    return Outcome(run, requests, timeline, report, judge_fairness(run, winners),
                   time.perf_counter() - started, checkouts, _lost(run, store))


def _lost(run: Run, store: SyncDriver) -> tuple[str, ...]:
    """Requests answered ISSUED that ended as neither a stored coupon nor a compensation
    (Jepsen's "lost"): what the checker cannot name once the store itself has forgotten
    them, since only the users' answers remember. Exact at rest, as the run ends."""
    assert store.repository is not None, "a simulation always has a database"
    ledger = store.repository.ledger(run.scenario.event.coupon_id)
    kept = {request for request, _user, _n in ledger.coupons} | ledger.compensated
    told = {record.status_of or record.request for record in run.requests
            if record.answer == IssueOutcome.ISSUED.value}
    return tuple(sorted(told - kept))


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Collect the young garbage rarely and the old never, while the model runs.

    A crowd's run holds millions of long-lived objects (records, processes,
    events), which each collection of the older generations walks again: at
    Python's thresholds that was 28% of Story 2's wall at 50,000 users (#17). Little
    of what a run drops is cyclic, and what is waits at most one young collection.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
