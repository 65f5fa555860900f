import json

import pytest

from couponsim.cli import main
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.flows import Variant
from couponsim.flows.issue import IssueOutcome
from couponsim.spike import SpikeConfig, run_spike

from .conftest import Backend

SMALL = {"users": 400, "stock": 100, "double_click": 0.3, "concurrency": 32}


def test_the_hardened_spike_keeps_every_invariant(driver: SyncDriver) -> None:
    result = run_spike(SpikeConfig(**SMALL), driver)  # type: ignore[arg-type]
    assert result.report.ok
    assert result.told[IssueOutcome.ISSUED] == result.report.issued == 100
    assert sum(result.told.values()) == result.requests > 400


def test_the_seed_spike_double_issues_to_double_clickers(driver: SyncDriver) -> None:
    result = run_spike(SpikeConfig(**SMALL, variant=Variant.SEED), driver)  # type: ignore[arg-type]
    assert result.report.duplicates
    assert all(n == 2 for n in result.report.duplicates.values())
    assert result.report.oversold == 0
    assert not result.report.ok


def test_a_spike_replays_identically_from_its_seed(driver: SyncDriver) -> None:
    config = SpikeConfig(**SMALL, variant=Variant.SEED)  # type: ignore[arg-type]
    first, second = run_spike(config, driver), run_spike(config, driver)
    assert first.told == second.told
    assert first.report.coupons_per_user == second.report.coupons_per_user


@pytest.mark.parametrize("fields", [{"users": 0}, {"double_click": 1.5}, {"concurrency": 0},
                                    {"variant": "best"}])
def test_bad_spike_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises((InvalidInput, ValueError)):
        SpikeConfig(**fields)  # type: ignore[arg-type]


def test_the_command_prints_the_tally_and_exits_by_the_invariants(
        capsys: pytest.CaptureFixture[str], backend: Backend) -> None:
    url = "fake://cli-test" if backend.name == "fake" else backend.url
    args = ["run", "spike", "--users", "300", "--stock", "50", "--double-click", "0.5",
            "--redis-url", url]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all invariants hold" in out and "ISSUED" in out
    assert main([*args, "--variant", "seed"]) == 1
    assert "FAIL  no duplicate" in capsys.readouterr().out


def test_the_command_speaks_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--users", "200", "--stock", "20", "--json",
                 "--redis-url", "fake://cli-json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True
    assert document["told"]["ISSUED"] == 20
    assert {check["name"] for check in document["checks"]} >= {
        "no oversell (coupons issued beyond the stock)"}


@pytest.mark.parametrize(("args", "message"), [
    (["--redis-url", "redis://127.0.0.1:1/0"], "did not answer"),
    (["--redis-url", "mongodb://x"], "unknown Redis URL"),
    (["--coupon", "a{b}"], "coupon ID"),
    (["--users", "-3"], "at least 1"),
])
def test_the_command_reports_bad_input_with_exit_2(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *args]) == 2
    assert message in capsys.readouterr().err
