"""The planner's figure of a run and the one registry of names it reads: each panel
asks its question and answers it from the run, on axes cut to where things happen."""

from typing import Any

import pytest

from couponsim import names
from couponsim.drivers.sync import SyncDriver
from couponsim.persistence.repository import Repository
from couponsim.sim.figures import figure
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario
from couponsim.sweep.metrics import METRICS, label

from .conftest import Backend


@pytest.fixture
def embedded(fake_backend: Backend, sqlite_repository: Repository) -> SyncDriver:
    return SyncDriver(fake_backend.client, fake_backend.url, sqlite_repository)


def _panels(fig: Any) -> list[Any]:
    """The figure's panels (twin axes share a panel and carry no title)."""
    return [ax for ax in fig.axes if ax.get_title()]


def test_every_sweep_metric_and_summary_time_has_a_registered_name_with_a_unit() -> None:
    for key in [*METRICS, "last_arrival_s", "last_stored_s"]:
        assert names.metric(key).label and key in names.METRICS
    assert label("p99_stored_s") == "p99 wait from press to coupon stored (s)"
    assert str(names.parameter("latency.network_ms")) == "one-way network latency (ms)"
    assert str(names.parameter("consumers.count")) == "number of consumers"
    assert str(names.parameter("section.other_ms")) == "section.other_ms (ms)"
    with pytest.raises(KeyError):
        names.metric("p42_nothing")


@pytest.mark.slow
def test_a_run_without_gateway_shows_five_questions_and_says_why_no_gateway_panel(
        embedded: SyncDriver) -> None:
    outcome = simulate(load_scenario("black_friday", [
        "traffic.users=3000", "event.stock=200", "traffic.spread_s=3"]), embedded)
    fig = figure(outcome)
    titles = [ax.get_title().replace("\n", " ") for ax in _panels(fig)]
    assert len(titles) == 6, titles
    assert titles[0].startswith("When did the stock sell out?")
    assert "(the last ISSUED answer)" in titles[0]
    assert titles[1].startswith("How long until the first answer?")
    assert titles[2].startswith("How long from press to coupon stored?")
    assert titles[3].startswith("How did the")
    assert titles[4].startswith("Did the consumers keep up?")
    assert "no gateway in this scenario" in fig._suptitle.get_text()
    stock = _panels(fig)[0]
    low, high = stock.get_xlim()
    assert high - low < 0.5 * float(outcome.timeline.t_s.max() - outcome.timeline.t_s.min()), \
        "the sell-out is not a cliff on the whole run's axis"
    assert all(ax.get_xlabel() or ax.get_title().startswith("Key") for ax in _panels(fig))
    mix = _panels(fig)[3]
    shown = {tick.get_text() for tick in mix.get_yticklabels()}
    assert shown == {names.outcome(s) for s in outcome.summary["users_by_final_state"]}


@pytest.mark.slow
def test_a_gateway_run_adds_its_decisions_and_the_room(embedded: SyncDriver) -> None:
    outcome = simulate(load_scenario("overload_10x", [
        "traffic.users=4000", "event.stock=100", "traffic.spread_s=0.5",
        "gateway.rate_limit_per_s=500"]), embedded)
    assert outcome.run.admissions, "the model records each admission round"
    assert sum(n for _, n in outcome.run.admissions) > 0
    panels = _panels(figure(outcome))
    assert len(panels) == 8
    decided, room = panels[5], panels[6]
    limited = int((outcome.requests.path == "queued: rate limited").sum())
    assert f"Limiter refused {limited:,}" in decided.get_title().replace("\n", " ")
    assert decided.get_yscale() == "log"
    legend = [t.get_text() for t in decided.get_legend().get_texts()]
    assert any(text.startswith(names.path("queued: rate limited")) for text in legend)
    assert room.get_title().startswith("Waiting room: peaked at")
