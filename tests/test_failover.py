"""Failover and restarts on Redis servers of the test's own: what each loses, and
that the invariant checker sees it (the Jepsen way: a test fails if an anomaly
that happened went unseen). Loss is made certain, not hoped for: see
:mod:`couponsim.failover` for how the replica is held behind."""

from pathlib import Path

import pytest

from couponsim import failover
from couponsim.local_redis import LocalRedisError, redis_server_path
from couponsim.persistence.repository import Repository

from .conftest import _missing

pytestmark = pytest.mark.redis_cluster


@pytest.fixture(autouse=True)
def _needs_redis_server() -> None:
    if redis_server_path() is None:
        _missing("redis-server", "COUPONSIM_REQUIRE_REDIS", LocalRedisError("not on PATH"))


def _repository(tmp_path: Path, cap_at_stock: bool) -> Repository:
    repository = Repository.from_url(f"sqlite:///{tmp_path / 'coupons.sqlite'}")
    repository.cap_at_stock = cap_at_stock
    return repository


@pytest.mark.slow
def test_failover_with_a_lagging_replica_oversells_and_the_checker_sees_it(
        tmp_path: Path) -> None:
    plan = failover.Plan()
    outcome = failover.cluster_failover(tmp_path / "cluster", _repository(tmp_path, False), plan)
    report = outcome.report
    assert report is not None and not report.ok
    # The issues acknowledged while the replica lagged were persisted, then forgotten
    # by the promoted replica, whose stock sold them again.
    assert outcome.oversold > 0
    assert report.unexpected, "coupons stored for requests the queue no longer knows"
    assert report.conservation_gap > 0
    assert outcome.duplicates == 0, "the database's (user, coupon, ordinal) key held"


@pytest.mark.slow
def test_the_database_as_arbiter_keeps_oversold_and_duplicates_at_zero(tmp_path: Path) -> None:
    outcome = failover.cluster_failover(tmp_path / "cluster", _repository(tmp_path, True))
    report = outcome.report
    assert report is not None
    assert outcome.oversold == 0 and outcome.duplicates == 0
    assert outcome.compensated > 0, "users told ISSUED after the failover were refused"
    assert not report.ok, "the checker still reports what Redis forgot"


def test_restart_without_persistence_forgets_the_event(tmp_path: Path) -> None:
    outcome = failover.restart(tmp_path / "redis", _repository(tmp_path, True), "no persistence")
    assert outcome.report is None and outcome.detected
    assert outcome.lost > 0


@pytest.mark.parametrize("persistence", ["AOF everysec", "AOF always"])
def test_a_killed_process_loses_nothing_with_aof(tmp_path: Path, persistence: str) -> None:
    """SIGKILL kills the process, not the machine: what Redis wrote (fsynced or not)
    is in the kernel's page cache and comes back. everysec differs from always only
    when the machine itself goes down, which a test cannot do here."""
    outcome = failover.restart(tmp_path / "redis", _repository(tmp_path, True), persistence)
    assert outcome.report is not None and outcome.report.ok
    assert (outcome.oversold, outcome.duplicates, outcome.lost) == (0, 0, 0)
