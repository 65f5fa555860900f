"""The SimPy model: scenario files, reproducible runs, the seed's flaws showing under
load, the hardened design holding, and the command line."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from couponsim.cli import main
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import (
    DatabaseUnavailable,
    InjectedCrash,
    InvalidChoice,
    InvalidInput,
    RedisUnavailable,
    RequestIdConflict,
    UnknownCoupon,
    UnknownRequest,
)
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.records import CouponStatus
from couponsim.sim.results import Outcome, room_waits
from couponsim.sim.run import simulate
from couponsim.sim.scenario import Scenario, load_scenario, scenario_names
from couponsim.sim.traffic import Click, Kind, plan

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
    ("traffic.ramp_share=1.5", "share from 0 to 1"),
    ("traffic.bots=-1", "traffic.bots must not be negative"),
    ("traffic.patience_s=0", "above 0"),
    ("checkout.amount=-5", "checkout.amount must not be negative"),
    ("checkout.cancel_share=2", "share from 0 to 1"),
    ("checkout.nope=1", "unknown field"),
    ('seed_options.unique_key="nothing"',
     "seed_options.unique_key must be one of user_coupon, none, got 'nothing'"),
    ("seed_options.cache_field=1", "seed_options.cache_field must be one of code, coupon"),
    ("seed_options.nope=1", "unknown field"),
    ("seed.unique_key=none", "seed is the run's random seed.*seed_options"),
    ("host.background_cores=0.5", "needs a host"),
    ("host.cores=1.5", "whole number"),
])
def test_bad_scenario_values_are_refused_naming_the_field(override: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_scenario("black_friday", [override])


def test_a_bad_reading_of_the_seed_is_a_typed_error_and_exit_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(InvalidChoice) as refused:
        load_scenario("black_friday", ["seed_options.unique_key=unique"])
    assert (refused.value.field, refused.value.allowed) == (
        "seed_options.unique_key", ("user_coupon", "none"))
    stores = ["--redis-url", "fake://bad-reading",
              "--db-url", f"sqlite:///{tmp_path / 'c.sqlite'}"]
    assert main(["run", "black_friday", "--variant", "seed", *stores,
                 "--set", "seed_options.unique_key=unique"]) == 2
    assert "seed_options.unique_key must be one of user_coupon, none" in \
        capsys.readouterr().err


def test_an_unknown_scenario_lists_the_bundled_ones() -> None:
    with pytest.raises(InvalidInput, match="black_friday"):
        load_scenario("cyber_monday")


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_seed_variant_under_load_loses_coupons(embedded: SyncDriver) -> None:
    """Double clicks overlap once Redis queues: both take stock, the database's per-user
    constraint refuses the second, and the seed consumer drops the batch it popped,
    whose users it had told COMPLETED with a code already (docs/seed_trace.md S24-S28)."""
    scenario = load_scenario("black_friday", [*SMALL, 'variant="seed"',
                                              "traffic.double_click_share=0.3",
                                              "traffic.double_click_within_ms=5",
                                              # users of a lost coupon give up after 30 s
                                              # of polling, not the design's 5 minutes
                                              "traffic.status_timeout_s=30"])
    outcome = simulate(scenario, embedded)
    assert not outcome.report.ok
    assert outcome.report.lost_units > 0
    told = outcome.report.told
    assert told is not None and told.completed_unstored and told.codes_not_held
    requests = outcome.requests.set_index("request").loc[list(told.completed_unstored)]
    people = requests[requests.kind != "bot"]     # a bot never reads its status
    assert len(people) and set(people.final_state) == {"COMPLETED"}, "told, not stored"


@pytest.mark.slow
def test_the_seed_options_section_reaches_the_consumer(embedded: SyncDriver) -> None:
    """S28 read without a unique key (``--set seed_options.unique_key=none``): the same
    run's double clicks, which the workbench's key refuses with their batch, are both
    stored, and the database's rows show their users over the one-per-user limit. On
    the embedded stores: tests/test_verify_told.py reads both readings on every store."""
    overlap = [*SMALL, 'variant="seed"', "traffic.double_click_share=0.3",
               "traffic.double_click_within_ms=5", "traffic.status_timeout_s=30"]
    keyed = simulate(load_scenario("black_friday", overlap), embedded)
    unkeyed = simulate(load_scenario("black_friday",
                                     [*overlap, "seed_options.unique_key=none"]), embedded)
    assert keyed.report.lost_units > 0 and not keyed.report.duplicates
    report, told = unkeyed.report, unkeyed.report.told
    assert report.duplicates and report.lost_units == 0 and not report.ok
    assert report.persisted == report.issued == 200
    assert told is not None and told.completed_unstored == told.codes_not_held == ()
    rows = Counter(user for _request, user, _n in
                   embedded.repository.ledger("bf-2026").coupons)  # type: ignore[union-attr]
    assert {user: n for user, n in rows.items() if n > 1} == report.duplicates
    assert unkeyed.summary["seed_options"] == {"cache_field": "code", "unique_key": "none"}
    assert keyed.summary["seed_options"]["unique_key"] == "user_coupon"


@pytest.mark.slow
def test_the_tables_and_summary_carry_what_a_planner_reads(embedded: SyncDriver) -> None:
    outcome = simulate(load_scenario("black_friday", SMALL), embedded)
    summary = outcome.summary
    won = summary["users_by_final_state"]["COMPLETED"] + summary["bot_coupons"]
    assert won == 200, "one per user who got one (bots are users too)"
    assert sum(summary["users_by_final_state"].values()) == 3000
    assert summary["sell_out_s"] is not None and summary["sell_out_s"] > 0
    assert summary["answer_latency_ms_by_path"]["direct"]["p99"] >= \
        summary["answer_latency_ms_by_path"]["direct"]["p50"]
    assert set(outcome.timeline.columns) >= {"t_s", "stock_left", "backlog", "room", "answered"}
    assert outcome.timeline.stock_left.iloc[-1] == 0
    assert outcome.requests.answer_ms.notna().all(), "every request was answered"
    assert (outcome.requests.final_state != "").all(), "and ended with a final state"


@pytest.mark.slow
def test_the_overload_scenario_engages_the_gateway(embedded: SyncDriver) -> None:
    scenario = load_scenario("overload_10x", [
        "traffic.users=4000", "event.stock=100", "traffic.spread_s=0.5",
        "gateway.rate_limit_per_s=500"])
    outcome = simulate(scenario, embedded)
    assert outcome.report.ok, outcome.report.checks
    paths = set(outcome.requests.path)
    assert "queued: rate limited" in paths
    people = outcome.requests[outcome.requests.kind != "bot"]
    final = set(people.final_state)
    assert final <= {"ISSUED", "COMPLETED", "SOLD_OUT", "DUPLICATE", "NOT_ACTIVE", "LEFT"}, final
    per_user = outcome.summary["users_by_final_state"]
    assert per_user.get("COMPLETED", 0) + per_user.get("ISSUED", 0) <= 100, "never more than stock"
    waits = room_waits(outcome)
    assert len(waits) > 1000 and (waits.position >= 1).all() and (waits.actual_wait_s >= 0).all()
    assert (waits.estimated_wait_s == waits.position / 100).all(), "100 admitted a second"
    told_sold_out = waits[waits.final_state == "SOLD_OUT"]
    assert (told_sold_out.actual_wait_s > 0).all(), "their answer came when the room closed"


def _room_crowd(driver: SyncDriver, *overrides: str) -> Outcome:
    """1,500 users against a rate limit of 300 a second: most wait in the room."""
    outcome = simulate(load_scenario("overload_10x", [
        "traffic.users=1500", "event.stock=100", "traffic.spread_s=0.5",
        "gateway.rate_limit_per_s=300", *overrides]), driver)
    assert outcome.report.ok, outcome.report.checks
    return outcome


def test_a_waiting_user_whose_page_polls_learns_the_news_when_the_page_next_asks(
        embedded: SyncDriver) -> None:
    """``traffic.room_poll_ms``: the service's page asks the room at once and then every
    second, so a user the room told is told on their page only at its next question, a
    whole number of polls after their answer; pushed, they learn it when it is decided."""
    told_late = {}
    for poll_ms in (0, 1000):
        waited = room_waits(_room_crowd(embedded, f"traffic.room_poll_ms={poll_ms}"))
        sold_out = waited[waited.final_state == "SOLD_OUT"]
        assert len(sold_out) > 500
        phase_ms = (sold_out.actual_wait_s * 1000).round(3) % 1000
        told_late[poll_ms] = ((phase_ms > 0.01) & (phase_ms < 999.99)).mean()
    assert told_late == {0: pytest.approx(1, abs=0.01), 1000: 0}, told_late


def test_the_waiting_pages_asks_load_the_instances_the_presses_wait_for(
        embedded: SyncDriver) -> None:
    """``service.room_poll_cpu_ms``: every waiting page asks the room each second and the
    instance pays for each ask, so presses wait longer for it than when the asks are
    free."""
    waits = {}
    for ask_ms in (0, 2):
        outcome = _room_crowd(embedded, "service.instances=1", "service.cpu_ms=0.5",
                              "traffic.room_poll_ms=1000", f"service.room_poll_cpu_ms={ask_ms}")
        waits[ask_ms] = outcome.requests.instance_wait_ms.quantile(0.95)
    assert waits[2] > 5 * waits[0], waits


def test_on_a_one_core_host_two_instances_serve_as_one(embedded: SyncDriver) -> None:
    """``[host]``: every burst of CPU needs a core as well as its process. One core
    runs one burst at a time, so two instances on it make presses wait exactly as one
    instance does on it, and longer than two with a core each."""
    waits = {}
    for instances, cores in ((2, 1), (1, 1), (2, 0)):
        outcome = simulate(load_scenario("black_friday", [
            *SMALL, "service.instances=" + str(instances), "service.cpu_ms=0.5",
            f"host.cores={cores}"]), embedded)
        assert outcome.report.ok, outcome.report.checks
        waits[instances, cores] = outcome.requests.instance_wait_ms.to_numpy()
    assert (waits[2, 1] == waits[1, 1]).all()
    assert waits[2, 1].mean() > 2 * waits[2, 0].mean(), (waits[2, 1].mean(), waits[2, 0].mean())


def test_a_consumer_sharing_its_host_with_outside_load_stores_more_slowly(
        embedded: SyncDriver) -> None:
    """The database's work and the consumer's own time wait for a core the host's
    outside load (``host.background_cores``) keeps busy part of the time."""
    last_stored = {}
    for host in (["host.cores=0"], ["host.cores=1", "host.background_cores=0.6"]):
        outcome = simulate(load_scenario("black_friday", [
            *SMALL, "consumers.count=1", "consumers.batch_size=1",
            "latency.database_batch_ms=20", *host]), embedded)
        assert outcome.report.ok, outcome.report.checks
        last_stored[host[0]] = outcome.summary["last_stored_s"]
    assert last_stored["host.cores=1"] > 1.3 * last_stored["host.cores=0"], last_stored


def test_overloaded_instances_open_the_breaker_and_the_room_takes_the_crowd(
        embedded: SyncDriver) -> None:
    """Story 2 as the document tells it: one instance serving 200 presses a second
    against a crowd of 1,000 a second. Requests wait for it past the time limiter's
    second, time out without reaching Redis, the breaker opens, and later presses go
    to the room, which admits its batch a second; not one invariant breaks."""
    overloaded = ["traffic.users=2000", "event.stock=200", "service.instances=1",
                  "service.cpu_ms=5", "gateway.breaker_window=20",
                  "gateway.breaker_minimum_calls=20"]
    outcome = simulate(load_scenario("overload_10x", overloaded), embedded)
    assert outcome.report.ok, outcome.report.checks
    paths = outcome.requests.path.value_counts()
    assert paths["queued: timed out"] >= 20 and paths["queued: breaker open"] > 1000, paths
    assert "OPEN" in set(outcome.timeline.breaker)
    assert outcome.requests.instance_wait_ms.max() > 1000
    timed_out = outcome.requests[outcome.requests.path == "queued: timed out"]
    waited_ms = timed_out.instance_wait_ms + 5          # its wait and its CPU, then
    assert (waited_ms > 1000 - 1).all(), waited_ms.min()  # the limiter's whole-ms clock
    waits = room_waits(outcome)
    assert (waits.estimated_wait_s == waits.position / 100).all(), "100 admitted a second"


def test_without_instances_modelled_no_request_waits_for_one(embedded: SyncDriver) -> None:
    scenario = load_scenario("overload_10x", ["traffic.users=2000", "event.stock=200",
                                              "service.instances=0"])
    outcome = simulate(scenario, embedded)
    assert outcome.report.ok and (outcome.requests.instance_wait_ms == 0).all()


@pytest.mark.slow
def test_the_command_runs_a_scenario_and_writes_its_files(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stores = ["--redis-url", "fake://sim-cli", "--db-url", f"sqlite:///{tmp_path / 'c.sqlite'}"]
    args = ["run", "black_friday", *stores, "--users", "2000", "--set", "event.stock=100",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all invariants hold" in out and "sell-out time: " in out
    assert "last user's final answer: " in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "requests.csv", "timeline.csv", "checkouts.csv", "summary.json", "figures.png"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["users_by_final_state"]["COMPLETED"] + summary["bot_coupons"] == 100
    assert main(["run", "black_friday", *stores, "--users", "2000", "--stock", "5"]) == 2
    assert "belong to the spike job" in capsys.readouterr().err
    assert main(["run", "spike", *stores, "--set", "traffic.users=5"]) == 2
    assert "belong to the simulation" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["run", "black_friday", *stores, "--out", str(tmp_path / "a-file")]) == 2


@pytest.mark.parametrize("error", [
    UnknownCoupon("c1"), UnknownRequest("r1"), RequestIdConflict("r1", "u2"),
    RedisUnavailable("redis://h", "down"), DatabaseUnavailable("sqlite://", "locked"),
    InjectedCrash("after_read"), InvalidChoice("f", "x", ("a", "b"))])
def test_errors_survive_simpys_copy_between_processes(error: Exception) -> None:
    """SimPy re-creates a failed process's exception as type(e)(*e.args)."""
    copy = type(error)(*error.args)
    assert (type(copy), str(copy)) == (type(error), str(error))


def test_the_traffic_plan_adds_ramps_and_bots_without_moving_anyone_else() -> None:
    spike = load_scenario("black_friday", ["traffic.users=2000", "traffic.early_share=0.1",
                                           "traffic.bots=0"])
    busy = load_scenario("black_friday", ["traffic.users=2000", "traffic.early_share=0.1",
                                          "traffic.bots=3", "traffic.bot_requests=7"])

    def clicks(scenario: Scenario) -> list[Click]:
        streams = np.random.SeedSequence(1).spawn(2)
        return plan(scenario.traffic, *(np.random.default_rng(s) for s in streams))

    plain, with_bots = clicks(spike), clicks(busy)
    assert [c.at_ms for c in plain] == sorted(c.at_ms for c in plain)
    assert [c for c in with_bots if c.kind is not Kind.BOT] == plain
    bots = [c for c in with_bots if c.kind is Kind.BOT]
    assert len(bots) == 21 and len({c.request for c in bots}) == 21
    assert sum(c.at_ms < 0 for c in plain if c.kind is Kind.FIRST) in range(150, 250)
    ramp = clicks(load_scenario("black_friday", ["traffic.users=2000", "traffic.early_share=0",
                                                 "traffic.ramp_share=1",
                                                 "traffic.ramp_s=10"]))
    times = np.array([c.at_ms for c in ramp if c.kind is Kind.FIRST])
    assert times.min() >= 0 and times.max() <= 10_000
    # a rising ramp: the second half of the window sees three times the first half's users
    assert 2.5 < (times > 5_000).sum() / (times <= 5_000).sum() < 3.5


@pytest.mark.slow
def test_impatient_users_leave_the_room_and_the_room_knows(embedded: SyncDriver) -> None:
    scenario = load_scenario("overload_10x", [
        "traffic.users=3000", "event.stock=100", "traffic.spread_s=0.5",
        "traffic.abandon_share=0.5", "traffic.patience_s=0.5"])
    outcome = simulate(scenario, embedded)
    assert outcome.report.ok, outcome.report.checks
    finals = outcome.requests.groupby("user").final_state.agg(set)
    left = set(finals[finals == {"LEFT"}].index)   # not back by a later click
    assert len(left) > 100, "with half the users this impatient, many leave"
    room = embedded.client.hgetall(CouponKeys(scenario.event.coupon_id).room)
    assert {user for user in left if room.get(user) != "LEFT"} == set()
    assert "GAVE_UP" not in set(outcome.requests.final_state), "nobody is forgotten"


@pytest.mark.slow
def test_retries_and_bots_never_take_two_coupons(embedded: SyncDriver) -> None:
    scenario = load_scenario("black_friday", [
        *SMALL, "traffic.retry_share=1", "traffic.client_timeout_ms=1", "traffic.bots=4",
        "traffic.bot_requests=30", "traffic.bot_interval_ms=20"])
    outcome = simulate(scenario, embedded)
    assert outcome.report.ok, outcome.report.checks
    kinds = outcome.summary["requests_by_kind"]
    assert kinds["bot"] == 120 and kinds["retry"] > 0
    holders = pd.Series([c.user_id for c in embedded.repository.coupons_of_event(
        scenario.event.coupon_id)])
    assert len(holders) == 200 and holders.is_unique, "one coupon per user, bots included"
    assert outcome.summary["bot_coupons"] == holders.str.startswith("bot").sum()


@pytest.mark.slow
def test_checkout_uses_each_coupon_once_and_cancelled_ones_come_back(
        embedded: SyncDriver) -> None:
    scenario = load_scenario("black_friday", [
        *SMALL, "checkout.share=1", "checkout.delay_s=1", "checkout.double_submit_share=1",
        "checkout.cancel_share=0.5", "checkout.cancel_after_s=1"])
    outcome = simulate(scenario, embedded)
    assert outcome.report.ok, outcome.report.checks
    applies = outcome.checkouts[outcome.checkouts.action == "apply"]
    winners = 200 - outcome.summary["bot_coupons"]
    assert len(applies) == 2 * winners, "every winner checked out, twice at once"
    assert (applies.groupby("code").outcome.apply(lambda o: (o == "APPLIED").sum()) == 1).all()
    released = outcome.checkouts[outcome.checkouts.outcome == "RELEASED"]
    assert 50 < len(released) < 150
    for code in released.code:
        view = embedded.repository.find_coupon(code)
        assert view is not None and view.status is CouponStatus.ACTIVE, "usable again"


@pytest.mark.real_redis
@pytest.mark.slow
def test_a_run_on_a_real_redis_is_the_run_on_fakeredis(
        fake_backend: Backend, real_backend: Backend, tmp_path: Path) -> None:
    """The store only answers; virtual time decides when. The same seed gives the same
    run, request for request, on either Redis."""
    scenario = load_scenario("overload_10x", [
        "traffic.users=2000", "event.stock=100", "traffic.spread_s=0.5",
        "gateway.rate_limit_per_s=500", "traffic.abandon_share=0.2", "checkout.share=0.5"])
    runs = []
    for backend in (fake_backend, real_backend):
        repository = Repository.from_url(f"sqlite:///{tmp_path / backend.name}.sqlite")
        outcome = simulate(scenario, SyncDriver(backend.client, backend.url, repository))
        assert outcome.report.ok, outcome.report.checks
        runs.append(outcome)
        repository.engine.dispose()
    fake, real = runs
    assert fake.requests.equals(real.requests)
    assert fake.checkouts.equals(real.checkouts)
    assert fake.timeline.equals(real.timeline)


def test_one_consumer_is_paced_by_its_own_time_per_batch_and_entry(embedded: SyncDriver) -> None:
    """The worker's time between its calls (calibrate's consumer_batch_cpu_ms and
    consumer_row_cpu_ms) holds the consumer: batches of one, 15 + 5 ms each, store one
    coupon per 20 ms at most; without it they follow each other faster."""
    base = ["traffic.users=300", "event.stock=30", "consumers.count=1",
            "consumers.batch_size=1", "checkout.share=0"]
    paced = simulate(load_scenario("black_friday", [
        *base, "latency.consumer_batch_cpu_ms=15", "latency.consumer_row_cpu_ms=5"]), embedded)
    assert paced.report.ok and len(paced.run.stored_ms) == 30
    assert np.diff(sorted(paced.run.stored_ms.values())).min() >= 20 - 1e-6
    free = simulate(load_scenario("black_friday", base), embedded)
    assert np.diff(sorted(free.run.stored_ms.values())).min() < 20
