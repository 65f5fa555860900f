"""Side-by-side tables, the model-against-theory table, and replaying a schedule."""

from collections import Counter

from couponsim.explore.explorer import replay, run_schedule
from couponsim.explore.scenarios import SCENARIOS
from couponsim.flows import Variant
from couponsim.sim.against_theory import Case, against_theory
from couponsim.tables import invariant_table, summary_table
from couponsim.theory import md1_wait, mmc_wait
from couponsim.verify import InvariantReport


def report(stock_left: int, issued: int) -> InvariantReport:
    return InvariantReport("c1", "hardened", 10, 1, stock_left, issued, 0, issued, 0,
                           Counter({f"u{n}": 1 for n in range(issued)}))


def test_the_invariant_table_puts_reports_side_by_side() -> None:
    table = invariant_table({"good": report(4, 6), "bad": report(5, 6)})
    conservation = table.loc["conservation (stock left + issued - initial)"]
    assert (conservation["good", "observed"], conservation["good", "verdict"]) == (0, "ok")
    assert (conservation["bad", "observed"], conservation["bad", "verdict"]) == (1, "BROKEN")
    assert len(table) == len(report(4, 6).checks)


def test_the_summary_table_flattens_nested_fields_and_leaves_gaps_empty() -> None:
    table = summary_table({"a": {"users": 3, "latency": {"p50": 1.5}}, "b": {"users": 4}})
    assert table.loc["latency.p50", "a"] == 1.5 and table.loc["users", "b"] == 4
    assert table["b"].isna()["latency.p50"]


def test_a_case_knows_its_closed_form_and_the_table_judges_the_model() -> None:
    assert Case("M/M/2", 1.5, 1.0, servers=2).theory_ms == mmc_wait(1.5, 1.0, 2)
    assert Case("M/D/1", 0.5, 1.0, exponential_service=False).theory_ms == md1_wait(0.5, 1.0)
    table = against_theory([Case("M/M/1", 0.5, 1.0)], requests=400, replications=4)
    row = table.loc["M/M/1"]
    assert row.utilisation == 0.5 and row.low_ms <= row.model_ms <= row.high_ms
    assert row.holds_theory == (row.low_ms <= row.theory_ms <= row.high_ms)


def test_replaying_a_schedule_gives_the_same_run_and_fits_another_variant() -> None:
    choices = iter([0, 1, 0, 1, 1, 0] * 4)
    first = run_schedule(SCENARIOS["double-click"], Variant.SEED, lambda n: next(choices) % n)
    again = replay(SCENARIOS["double-click"], Variant.SEED, first.choices)
    assert again.steps == first.steps and again.broken == first.broken
    hardened = replay(SCENARIOS["double-click"], Variant.HARDENED, first.choices)
    assert hardened.ok and {step.actor for step in hardened.steps} == {"u1:click1", "u1:click2"}
