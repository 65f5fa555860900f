import json
from pathlib import Path
from typing import Any

import pytest

from couponsim.cli import main
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.flows import Variant
from couponsim.flows.consume import CrashPoint
from couponsim.flows.issue import IssueOutcome
from couponsim.flows.seed_options import SeedOptions
from couponsim.spike import SpikeConfig, run_spike

from .conftest import Backend

SMALL = {"users": 400, "stock": 100, "double_click": 0.3, "concurrency": 32}


@pytest.mark.slow
def test_the_hardened_spike_keeps_every_invariant(system: SyncDriver) -> None:
    result = run_spike(SpikeConfig(**SMALL), system)  # type: ignore[arg-type]
    assert result.report.ok
    assert result.told[IssueOutcome.ISSUED] == result.report.persisted == 100
    assert result.consumed.persisted == 100
    assert sum(result.told.values()) == result.requests > 400


def test_the_seed_spike_turns_double_clicks_into_lost_coupons(system: SyncDriver) -> None:
    """Double clicks take two units of stock; the database's per-user constraint then
    refuses the second coupon, and the seed consumer drops the batch it popped."""
    result = run_spike(SpikeConfig(**SMALL, variant=Variant.SEED), system)  # type: ignore[arg-type]
    assert result.report.oversold == 0
    assert result.report.lost_units > 0
    assert result.consumed.dropped == result.report.lost_units
    assert not result.report.ok


@pytest.mark.slow
def test_without_a_unique_key_the_seed_spike_stores_double_clicks_twice(
        system: SyncDriver) -> None:
    """The same spike read without the (user, coupon, ordinal) key: no batch is refused,
    every unit taken is a stored coupon, and users stored twice are duplicates."""
    keyed = run_spike(SpikeConfig(**SMALL, variant=Variant.SEED), system)  # type: ignore[arg-type]
    result = run_spike(SpikeConfig(**SMALL, variant=Variant.SEED,  # type: ignore[arg-type]
                                   seed_options=SeedOptions(unique_key="none")), system)
    assert result.consumed.dropped == result.report.lost_units == 0
    assert result.report.persisted == 100 and result.report.oversold == 0
    assert result.report.duplicates and not result.report.ok
    assert keyed.report.lost_units > 0 and not keyed.report.duplicates


@pytest.mark.parametrize("point", list(CrashPoint))
def test_a_hardened_spike_with_a_consumer_crash_keeps_every_invariant(
        system: SyncDriver, point: CrashPoint) -> None:
    config = SpikeConfig(users=200, stock=50, batch_size=20, consumer_crash=point)
    result = run_spike(config, system)
    assert result.report.ok, result.report.checks
    assert result.report.persisted == 50


@pytest.mark.slow
def test_a_spike_replays_identically_from_its_seed(system: SyncDriver) -> None:
    config = SpikeConfig(**SMALL, variant=Variant.SEED)  # type: ignore[arg-type]
    first, second = run_spike(config, system), run_spike(config, system)
    assert first.told == second.told
    assert first.report.coupons_per_user == second.report.coupons_per_user
    assert first.consumed.dropped == second.consumed.dropped


@pytest.mark.parametrize("fields", [{"users": 0}, {"double_click": 1.5}, {"concurrency": 0},
                                    {"variant": "best"}])
def test_bad_spike_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises((InvalidInput, ValueError)):
        SpikeConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def stores(backend: Backend, tmp_path: Path) -> list[str]:
    url = "fake://cli-test" if backend.name == "fake" else backend.url
    return ["--redis-url", url, "--db-url", f"sqlite:///{tmp_path / 'cli.sqlite'}"]


@pytest.mark.slow
def test_the_command_prints_the_tally_and_exits_by_the_invariants(
        capsys: pytest.CaptureFixture[str], stores: list[str]) -> None:
    args = ["run", "spike", "--users", "300", "--stock", "50", "--double-click", "0.5", *stores]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all invariants hold" in out and "ISSUED" in out and "50 stored" in out
    assert main([*args, "--variant", "seed"]) == 1
    assert "FAIL  nothing lost" in capsys.readouterr().out


def test_the_command_takes_the_seeds_unique_key_reading(
        capsys: pytest.CaptureFixture[str], stores: list[str]) -> None:
    args = ["run", "spike", "--users", "300", "--stock", "50", "--double-click", "0.5",
            "--variant", "seed", "--json", *stores]
    assert main(args) == 1
    keyed = json.loads(capsys.readouterr().out)["report"]
    assert main([*args, "--unique-key", "none"]) == 1
    unkeyed = json.loads(capsys.readouterr().out)
    assert unkeyed["config"]["seed_options"]["unique_key"] == "none"
    report = unkeyed["report"]
    def lost(document: dict[str, Any]) -> int:
        return next(int(check["observed"]) for check in document["checks"]
                    if check["name"].startswith("nothing lost"))

    assert (report["persisted"], report["stock_left"], lost(report)) == (50, 0, 0)
    assert lost(keyed) > 0
    assert report["duplicates"] and not keyed["duplicates"] and keyed["persisted"] < 50
    assert main(["run", "spike", "--unique-key", "none", *stores]) == 2
    assert "--variant seed" in capsys.readouterr().err
    assert main(["run", "black_friday", "--unique-key", "none", *stores]) == 2
    assert "belong to the spike job" in capsys.readouterr().err


def test_verify_judges_a_live_system(capsys: pytest.CaptureFixture[str],
                                     stores: list[str]) -> None:
    assert main(["run", "--users", "100", "--stock", "10", "--coupon", "live", *stores]) == 0
    capsys.readouterr()
    assert main(["verify", "--coupon", "live", "--json", *stores]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["ok"], document["persisted"], document["stock_left"]) == (True, 10, 0)
    assert main(["run", "--users", "100", "--stock", "10", "--coupon", "live",
                 "--variant", "seed", "--crash-at", "after_read", *stores]) == 1
    capsys.readouterr()
    assert main(["verify", "--coupon", "live", *stores]) == 1
    assert "FAIL  nothing lost" in capsys.readouterr().out
    assert main(["verify", "--coupon", "ghost", *stores]) == 2
    if stores[1].startswith("fake://"):
        assert "lives inside one process" in capsys.readouterr().err


def test_the_command_speaks_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--users", "200", "--stock", "20", "--json",
                 "--redis-url", "fake://cli-json",
                 "--db-url", f"sqlite:///{tmp_path / 'json.sqlite'}"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True
    assert document["told"]["ISSUED"] == document["report"]["persisted"] == 20
    assert {check["name"] for check in document["report"]["checks"]} >= {
        "no oversell (coupons issued beyond the stock)"}


@pytest.mark.parametrize(("args", "message"), [
    (["--redis-url", "redis://127.0.0.1:1/0"], "cannot use Redis"),
    (["--redis-url", "mongodb://x"], "unknown Redis URL"),
    (["--db-url", "mysql://x/y"], "unsupported database"),
    (["--db-url", "postgresql+psycopg://nobody@127.0.0.1:1/x"], "did not answer"),
    (["--coupon", "a{b}"], "coupon ID"),
    (["--users", "-3"], "at least 1"),
])
def test_the_command_reports_bad_input_with_exit_2(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    db = ["--db-url", f"sqlite:///{tmp_path / 'bad.sqlite'}"]
    assert main(["run", *db, *args]) == 2
    assert message in capsys.readouterr().err
