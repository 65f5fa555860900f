"""The SimPy model: scenario files, reproducible runs, the seed's flaws showing under
load, the hardened design holding, and the command line."""

import json
from pathlib import Path

import pytest

from couponsim.cli import main
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import (
    DatabaseUnavailable,
    InjectedCrash,
    InvalidInput,
    RedisUnavailable,
    RequestIdConflict,
    UnknownCoupon,
    UnknownRequest,
)
from couponsim.persistence.repository import Repository
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario, scenario_names

from .conftest import Backend

SMALL = ["traffic.users=3000", "event.stock=200", "traffic.spread_s=0.5"]


@pytest.fixture
def embedded(fake_backend: Backend, sqlite_repository: Repository) -> SyncDriver:
    """The embedded defaults only: the model's own cost is what these tests exercise."""
    return SyncDriver(fake_backend.client, fake_backend.url, sqlite_repository)


def test_the_bundled_scenarios_load() -> None:
    assert {"black_friday", "overload_10x"} <= set(scenario_names())
    story1 = load_scenario("black_friday")
    assert (story1.traffic.users, story1.event.stock, story1.event.discount_value) == (
        50_000, 1_000, 10_000)
    assert load_scenario("overload_10x").gateway.enabled


@pytest.mark.parametrize(("override", "message"), [
    ("traffic.users=0", "traffic.users must be above 0"),
    ("traffic.userz=5", "unknown field"),
    ("traffic.double_click_share=1.5", "share from 0 to 1"),
    ('variant="best"', "variant"),
    ("event.warm_up_at_s=-0.5", "before the start"),
    ("nonsense", "section.field=value"),
    ("consumers.poll_ms=inf", "finite"),
    ("traffic.status_timeout_s=nan", "finite"),
    ("traffic.users=1e3", "whole number"),
    ("consumers.count=1.5", "whole number"),
    ("seed=-1", "seed"),
    ('seed="x"', "seed"),
    ('gateway.enabled="no"', "true or false"),
    ("traffic.users.x=1", "not a table"),
])
def test_bad_scenario_values_are_refused_naming_the_field(override: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_scenario("black_friday", [override])


def test_an_unknown_scenario_lists_the_bundled_ones() -> None:
    with pytest.raises(InvalidInput, match="black_friday"):
        load_scenario("cyber_monday")


def test_the_hardened_run_keeps_every_invariant_and_replays_from_its_seed(
        system: SyncDriver) -> None:
    scenario = load_scenario("black_friday", SMALL)
    first = simulate(scenario, system)
    assert first.report.ok, first.report.checks
    assert first.report.persisted == 200
    second = simulate(scenario, system)
    keep = ["user", "request", "path", "answer", "final_state", "redis_commands"]
    assert first.requests[keep].equals(second.requests[keep])
    assert first.summary["sell_out_s"] == second.summary["sell_out_s"]


def test_the_seed_variant_under_load_loses_coupons(embedded: SyncDriver) -> None:
    """Double clicks overlap once Redis queues: both take stock, the database's per-user
    constraint refuses the second, and the seed consumer drops the batch it popped."""
    scenario = load_scenario("black_friday", [*SMALL, 'variant="seed"',
                                              "traffic.double_click_share=0.3",
                                              "traffic.double_click_within_ms=5"])
    outcome = simulate(scenario, embedded)
    assert not outcome.report.ok
    assert outcome.report.lost_units > 0
    assert "GAVE_UP" in set(outcome.requests.final_state), "their users wait in vain"


def test_the_tables_and_summary_carry_what_a_planner_reads(embedded: SyncDriver) -> None:
    outcome = simulate(load_scenario("black_friday", SMALL), embedded)
    summary = outcome.summary
    assert summary["users_by_final_state"]["COMPLETED"] == 200, "one per user who got one"
    assert sum(summary["users_by_final_state"].values()) == 3000
    assert summary["sell_out_s"] is not None and summary["sell_out_s"] > 0
    assert summary["answer_latency_ms_by_path"]["direct"]["p99"] >= \
        summary["answer_latency_ms_by_path"]["direct"]["p50"]
    assert set(outcome.timeline.columns) >= {"t_s", "stock_left", "backlog", "room", "answered"}
    assert outcome.timeline.stock_left.iloc[-1] == 0
    assert outcome.requests.answer_ms.notna().all(), "every request was answered"


def test_the_overload_scenario_engages_the_gateway(embedded: SyncDriver) -> None:
    scenario = load_scenario("overload_10x", [
        "traffic.users=4000", "event.stock=100", "traffic.spread_s=0.5",
        "gateway.rate_limit_per_s=500"])
    outcome = simulate(scenario, embedded)
    assert outcome.report.ok, outcome.report.checks
    paths = set(outcome.requests.path)
    assert "queued: rate limited" in paths
    final = set(outcome.requests.final_state)
    assert final <= {"ISSUED", "COMPLETED", "SOLD_OUT", "DUPLICATE", "NOT_ACTIVE"}, final
    per_user = outcome.summary["users_by_final_state"]
    assert per_user.get("COMPLETED", 0) + per_user.get("ISSUED", 0) <= 100, "never more than stock"


def test_the_command_runs_a_scenario_and_writes_its_files(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stores = ["--redis-url", "fake://sim-cli", "--db-url", f"sqlite:///{tmp_path / 'c.sqlite'}"]
    args = ["run", "black_friday", *stores, "--users", "2000", "--set", "event.stock=100",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all invariants hold" in out and "sold out at" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "requests.csv", "timeline.csv", "summary.json", "figures.png"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["users_by_final_state"]["COMPLETED"] == 100
    assert main(["run", "black_friday", *stores, "--users", "2000", "--stock", "5"]) == 2
    assert "belong to the spike job" in capsys.readouterr().err
    assert main(["run", "spike", *stores, "--set", "traffic.users=5"]) == 2
    assert "belong to the simulation" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["run", "black_friday", *stores, "--out", str(tmp_path / "a-file")]) == 2


@pytest.mark.parametrize("error", [
    UnknownCoupon("c1"), UnknownRequest("r1"), RequestIdConflict("r1", "u2"),
    RedisUnavailable("redis://h", "down"), DatabaseUnavailable("sqlite://", "locked"),
    InjectedCrash("after_read")])
def test_errors_survive_simpys_copy_between_processes(error: Exception) -> None:
    """SimPy re-creates a failed process's exception as type(e)(*e.args)."""
    copy = type(error)(*error.args)
    assert (type(copy), str(copy)) == (type(error), str(error))
