"""The explorer finds each seed flaw with a minimal timeline, and finds nothing in the
hardened design: both directions, so it cannot quietly stop finding anything."""

import pytest

from couponsim.cli import main
from couponsim.effects import Command
from couponsim.explore.explorer import Store, exhaustive, run_schedule, search
from couponsim.explore.scenarios import SCENARIOS
from couponsim.explore.timeline import format_timeline, to_frame
from couponsim.flows import Variant

SEED_FLAWS = {
    "double-click": "no duplicate (users over their limit)",
    "consumer-crash": "nothing lost (stock taken, no coupon, no compensation)",
    "lock-expiry": "coupon used at most once (codes on two orders)",
    "warm-up-rerun": "no oversell (coupons issued beyond the stock)",
}
CI_EXAMPLES = 150
"""In CI; the documented large run is `couponsim explore NAME --examples 2000`."""


@pytest.mark.parametrize(("name", "broken"), SEED_FLAWS.items())
@pytest.mark.slow
def test_the_explorer_finds_every_seed_flaw(name: str, broken: str) -> None:
    found = search(SCENARIOS[name], Variant.SEED, CI_EXAMPLES)
    assert found.counterexample is not None
    assert broken in found.counterexample.broken


def test_the_double_click_counterexample_is_the_minimal_race() -> None:
    found = search(SCENARIOS["double-click"], Variant.SEED, CI_EXAMPLES)
    assert found.counterexample is not None
    steps = found.counterexample.steps
    assert len(steps) == 12, "two six-round-trip flows, nothing more"
    checks = [(s.actor, s.effect.split()[0]) for s in steps if s.effect.startswith("SISMEMBER")]
    adds = [i for i, s in enumerate(steps) if s.effect.startswith("SADD")]
    assert len(checks) == 2 and {actor for actor, _ in checks} == {"u1:click1", "u1:click2"}
    first_add = adds[0]
    assert all(i < first_add for i, s in enumerate(steps) if s.effect.startswith("SISMEMBER")), \
        "both clicks checked before either marked"


HARDENED_SCHEDULES = {"double-click": 2, "warm-up-rerun": 60, "concurrent-redemption": 24,
                      "consumer-crash": 159, "lock-expiry": 282, "double-click-stored": 2,
                      "status-overwrite": 3}
"""Every distinct schedule of each hardened scenario, as the exhaustive walk counts them:
fewer than 2,000 each, so the walk, not hypothesis, is the complete check."""


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.slow
def test_hypothesis_finds_nothing_in_the_hardened_design(name: str) -> None:
    found = search(SCENARIOS[name], Variant.HARDENED, CI_EXAMPLES)
    assert found.counterexample is None
    assert found.explored >= min(CI_EXAMPLES, HARDENED_SCHEDULES[name])


@pytest.mark.parametrize(("name", "schedules"), HARDENED_SCHEDULES.items())
@pytest.mark.slow
def test_every_schedule_of_the_small_hardened_cases_is_clean(name: str, schedules: int) -> None:
    walked = exhaustive(SCENARIOS[name], Variant.HARDENED)
    assert (walked.complete, walked.explored, walked.counterexample) == (True, schedules, None)


def test_the_exhaustive_walk_stops_at_the_first_seed_double_click() -> None:
    walked = exhaustive(SCENARIOS["double-click"], Variant.SEED)
    assert walked.counterexample is not None and not walked.complete
    assert walked.counterexample.broken == ["no duplicate (users over their limit)"]
    assert walked.explored < 876, "876 schedules in all; it stopped at the first race"


def test_an_actor_that_raises_a_real_error_is_a_failure_not_a_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from couponsim.explore import scenarios

    def broken_issue(request, now_ms):  # type: ignore[no-untyped-def]
        yield Command("GET", ("anything",))
        raise KeyError("a bug")

    monkeypatch.setitem(scenarios.ISSUE_FLOWS, Variant.HARDENED, broken_issue)
    found = search(SCENARIOS["double-click"], Variant.HARDENED, 10)
    assert found.counterexample is not None
    assert any("raised KeyError" in reason for reason in found.counterexample.broken)


def test_a_schedule_replays_exactly() -> None:
    choices = iter([0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    first = run_schedule(SCENARIOS["double-click"], Variant.SEED, lambda _n: next(choices))
    again = iter(first.choices)
    second = run_schedule(SCENARIOS["double-click"], Variant.SEED, lambda _n: next(again))
    assert first.steps == second.steps, "same effects, same results, same order"
    assert first.broken == second.broken == ["no duplicate (users over their limit)"]


def test_a_hardened_crash_schedule_replays_exactly_with_stream_ids_masked() -> None:
    choices = iter([0, 1, 2] * 12)
    first = run_schedule(SCENARIOS["consumer-crash"], Variant.HARDENED,
                         lambda n: next(choices) % n)
    again = iter(first.choices)
    second = run_schedule(SCENARIOS["consumer-crash"], Variant.HARDENED,
                          lambda _n: next(again))
    assert first.steps == second.steps
    assert any(s.effect == "(the actor stops here)" for s in first.steps)


@pytest.mark.slow
def test_the_timeline_reads_as_a_table_and_a_dataframe() -> None:
    found = search(SCENARIOS["lock-expiry"], Variant.SEED, CI_EXAMPLES)
    assert found.counterexample is not None
    steps = found.counterexample.steps
    text = format_timeline(steps)
    assert "lock TTL expires" in text and "mark_used_blindly" in text
    frame = to_frame(steps)
    assert list(frame.columns) == ["actor", "effect", "result"] and len(frame) == len(steps)


@pytest.mark.real_redis
def test_the_explorer_runs_against_a_real_redis(real_redis_url: str) -> None:
    store = Store(real_redis_url)
    assert search(SCENARIOS["double-click"], Variant.SEED, 50, store).counterexample
    assert not search(SCENARIOS["double-click"], Variant.HARDENED, 50, store).counterexample


@pytest.mark.slow
def test_the_command_exits_1_with_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "warm-up-rerun", "--variant", "seed", "--examples", "50"]) == 1
    out = capsys.readouterr().out
    assert "INVARIANT BROKEN" in out and "scheduler re-runs warm-up" in out
    assert main(["explore", "warm-up-rerun", "--exhaustive"]) == 0
    assert "no invariant broken in 60 schedules (every schedule)" in capsys.readouterr().out
    assert main(["explore", "double-click", "--examples", "0"]) == 2
