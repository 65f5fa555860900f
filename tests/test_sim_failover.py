"""The simulated failover: a replica behind by the replication lag is promoted mid-sale.
The checker must see what the lag cost (the Jepsen way), and nothing when there is none."""

from pathlib import Path

import pytest
import redis

from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.persistence.database import make_engine
from couponsim.persistence.repository import Repository
from couponsim.sim.failover import lag_table
from couponsim.sim.results import Outcome
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario

from .conftest import Backend

SALE = ["traffic.users=3000", "event.stock=200", "traffic.spread_s=0.5"]
DIES = "failover.at_s=0.03"
"""Mid sell-out: about 160 of the 200 coupons are issued by then."""


def _run(backend: Backend, repository: Repository, *overrides: str) -> Outcome:
    scenario = load_scenario("black_friday", [*SALE, DIES, *overrides])
    return simulate(scenario, SyncDriver(backend.client, backend.url, repository))


@pytest.mark.parametrize(("override", "message"), [
    ("failover.replication_lag_ms=-5", "failover.replication_lag_ms must not be negative"),
    ('failover.lag_distribution="normal"', "failover.lag_distribution must be one of"),
    ("failover.at_s=inf", "failover.at_s must be a finite number"),
    ("failover.when=3", "unknown field"),
])
def test_bad_failover_values_are_refused_naming_the_field(override: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_scenario("black_friday", [override])


def test_a_real_redis_is_refused_before_anything_is_touched(
        sqlite_repository: Repository) -> None:
    client = redis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    with pytest.raises(InvalidInput, match=r"failover.at_s.*fakeredis"):
        simulate(load_scenario("black_friday", [*SALE, DIES]),
                 SyncDriver(client, "redis://127.0.0.1:1", sqlite_repository))


@pytest.mark.slow
def test_a_replica_with_no_lag_loses_nothing(fake_backend: Backend,
                                             sqlite_repository: Repository) -> None:
    outcome = _run(fake_backend, sqlite_repository, "failover.replication_lag_ms=0")
    assert outcome.report.ok, outcome.report.checks
    assert outcome.report.persisted == 200
    failover = outcome.run.failover
    assert failover is not None and failover.acknowledged > 100, "it died mid sell-out"
    assert failover.forgotten == () and outcome.lost == ()
    assert outcome.summary["failover"]["forgotten"] == 0


@pytest.mark.slow
def test_a_lagging_replica_oversells_and_the_checker_sees_it(
        fake_backend: Backend, tmp_path: Path) -> None:
    """Without the database's stock cap, the promoted store sells again what it forgot."""
    repository = Repository(make_engine(f"sqlite:///{tmp_path}/nocap.sqlite"),
                            cap_at_stock=False)
    repository.create_schema()
    try:
        outcome = _run(fake_backend, repository, "failover.replication_lag_ms=20")
    finally:
        repository.engine.dispose()
    report, failover = outcome.report, outcome.run.failover
    assert failover is not None and len(failover.forgotten) > 20
    assert not report.ok
    assert report.oversold > 20, "the forgotten stock was sold a second time"
    assert len(report.unexpected) > 20, "coupons stored before the death, unknown to the store"
    assert outcome.lost, "some users told ISSUED got nothing"
    assert set(outcome.requests.final_state) >= {"FORGOTTEN"}


@pytest.mark.slow
def test_with_the_database_as_arbiter_the_excess_is_compensated_not_oversold(
        fake_backend: Backend, sqlite_repository: Repository) -> None:
    outcome = _run(fake_backend, sqlite_repository, "failover.replication_lag_ms=20")
    report = outcome.report
    assert report.oversold == 0 and not report.duplicates
    assert report.compensated > 20 and len(report.unexpected) > 20
    assert not report.ok, "the checker still sees what the store forgot"


@pytest.mark.slow
def test_the_same_seed_replays_the_same_failover(fake_backend: Backend,
                                                 sqlite_repository: Repository) -> None:
    lag = ['failover.lag_distribution="exponential"', "failover.replication_lag_ms=15"]
    first = _run(fake_backend, sqlite_repository, *lag)
    second = _run(fake_backend, sqlite_repository, *lag)
    assert first.run.failover == second.run.failover
    assert first.run.failover is not None and first.run.failover.lag_ms != 15, "drawn"
    keep = ["user", "request", "path", "answer", "final_state", "redis_commands"]
    assert first.requests[keep].equals(second.requests[keep])


@pytest.mark.slow
def test_the_lag_table_grows_with_the_lag() -> None:
    scenario = load_scenario("black_friday", SALE)
    table = lag_table(scenario, 0.03, [0, 20], arbiter=False)
    assert table.loc[0.0, "oversold"] == 0 and table.loc[0.0, "invariants_ok_share"] == 1
    assert table.loc[20.0, "oversold"] > 20 and table.loc[20.0, "invariants_ok_share"] == 0
    assert {"duplicates", "lost", "forgotten", "compensated", "unexpected"} <= set(table.columns)
