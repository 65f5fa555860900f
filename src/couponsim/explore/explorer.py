"""Run a scenario under one schedule, search schedules with hypothesis, or walk
them all.

A schedule is the sequence of choices "which live actor advances next"; each
run starts from a fresh store (a new FakeServer, or a flushed real Redis, and
an in-memory SQLite database), so runs never see each other.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fakeredis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from couponsim.connection import RedisClient, connect
from couponsim.drivers import advance
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Effect
from couponsim.errors import InjectedCrash
from couponsim.explore.scenarios import COUPON, Scenario
from couponsim.explore.timeline import Step, describe, show_result
from couponsim.flows import Variant
from couponsim.persistence.repository import Repository
from couponsim.verify import InvariantReport, check_invariants

Chooser = Callable[[int], int]
"""Given how many actors are live, the index of the one to advance."""


@dataclass
class Execution:
    choices: list[int]
    steps: list[Step]
    report: InvariantReport
    outcomes: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """Actors that raised something other than an injected crash: a bug, so a failure."""

    @property
    def broken(self) -> list[str]:
        return self.errors + [check.name for check in self.report.checks if not check.ok]

    @property
    def ok(self) -> bool:
        return not self.broken


@dataclass(frozen=True)
class Search:
    explored: int
    """Schedules run to the end before a counterexample was found (or in all)."""
    counterexample: Execution | None
    complete: bool = False
    """Every schedule was run: the exhaustive walk finished within its limit."""
    shrinking: int = 0
    """Hypothesis only: further runs spent shrinking the counterexample."""


class Store:
    """Makes the fresh store each run needs: fakeredis by default, or a real Redis."""

    def __init__(self, redis_url: str = "fake://") -> None:
        self.redis_url = redis_url

    def driver(self) -> SyncDriver:
        client: RedisClient
        if self.redis_url.startswith("fake://"):
            client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        else:
            client = connect(self.redis_url)
            client.flushdb()
        return SyncDriver(client, self.redis_url, Repository.from_url("sqlite://"),
                          sleep=lambda _s: None, clock_ms=lambda: 0)


def run_schedule(scenario: Scenario, variant: Variant, choose: Chooser,
                 store: Store | None = None) -> Execution:
    """Set up, run the actors in the order ``choose`` picks, finish, and judge."""
    driver = (store or Store()).driver()
    try:
        context = scenario.setup(driver, variant)
        actors = scenario.actors(variant, context)
        steps: list[Step] = []
        choices: list[int] = []
        outcomes: dict[str, Any] = {}
        errors: list[str] = []
        live: list[tuple[str, Any, Effect]] = []
        for actor in actors:
            try:
                live.append((actor.name, actor.flow, next(actor.flow)))
            except StopIteration as stop:
                outcomes[actor.name] = stop.value
        while live:
            index = choose(len(live)) if len(live) > 1 else 0
            choices.append(index)
            name, flow, effect = live[index]
            recorded: list[Any] = []

            def execute(effect: Effect, recorded: list[Any] = recorded) -> Any:
                try:
                    result = driver.execute(effect)
                except Exception as exc:
                    recorded.append(exc)
                    raise
                recorded.append(result)
                return result

            ended: BaseException | None = None
            try:
                live[index] = (name, flow, advance(flow, effect, execute))
            except StopIteration as stop:
                outcomes[name] = stop.value
                live.pop(index)
            except Exception as exc:
                outcomes[name] = ended = exc
                live.pop(index)
                if not isinstance(exc, InjectedCrash):
                    errors.append(f"actor {name!r} raised {type(exc).__name__}: {exc}")
            steps.append(Step(len(steps) + 1, name, describe(effect),
                              show_result(recorded[0]) if recorded else ""))
            if ended is not None:
                steps.append(Step(len(steps) + 1, name, "(the actor stops here)",
                                  f"raised {type(ended).__name__}: {ended}"))
        scenario.after(driver, variant)
        report = driver.run(check_invariants(COUPON, with_database=scenario.with_database))
        return Execution(choices, steps, report, outcomes, errors)
    finally:
        if driver.repository is not None:
            driver.repository.engine.dispose()


def replay(scenario: Scenario, variant: Variant, choices: list[int],
           store: Store | None = None) -> Execution:
    """Run ``choices`` (another run's, e.g. the seed's counterexample) again, here on
    ``variant``: the same decisions of which live actor advances next, in the same
    order, so the hardened flows face the interleaving that broke the seed's.

    Actors are listed in the same order in both variants; where fewer are live than
    a choice names, the last live one advances, and past the end of ``choices`` the
    first. Replayed on the same variant, the run is the same one.
    """
    remaining = iter(choices)
    return run_schedule(scenario, variant, lambda live: min(next(remaining, 0), live - 1),
                        store)


def search(scenario: Scenario, variant: Variant, examples: int,
           store: Store | None = None) -> Search:
    """Let hypothesis choose up to ``examples`` schedules; shrink the first that breaks."""
    found: list[Execution] = []
    explored = 0
    runs = 0

    class Broken(Exception):
        pass

    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(st.data())
    def probe(data: st.DataObject) -> None:
        nonlocal explored, runs
        execution = run_schedule(scenario, variant,
                                 lambda n: data.draw(st.integers(0, n - 1)), store)
        runs += 1
        if not found:
            explored = runs
        if not execution.ok:
            found.append(execution)
            raise Broken

    try:
        probe()
    except Broken:
        return Search(explored, found[-1], shrinking=runs - explored)
    return Search(explored, None)


class _Replay:
    """A chooser that replays a prefix of choices, then takes the first actor at every
    later choice, noting where another was possible: the branches still to walk."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.taken: list[int] = []
        self.branches: list[tuple[int, int]] = []

    def __call__(self, live: int) -> int:
        if len(self.taken) < len(self.prefix):
            self.taken.append(self.prefix[len(self.taken)])
        else:
            self.branches.append((len(self.taken), live))
            self.taken.append(0)
        return self.taken[-1]

    def alternatives(self) -> list[list[int]]:
        return [[*self.taken[:position], other]
                for position, live in self.branches for other in range(1, live)]


def exhaustive(scenario: Scenario, variant: Variant, limit: int = 100_000,
               store: Store | None = None) -> Search:
    """Run every schedule (up to ``limit``) until one breaks an invariant."""
    pending: list[list[int]] = [[]]
    explored = 0
    while pending and explored < limit:
        replay = _Replay(pending.pop())
        execution = run_schedule(scenario, variant, replay, store)
        explored += 1
        pending += replay.alternatives()
        if not execution.ok:
            return Search(explored, execution, complete=False)
    return Search(explored, None, complete=not pending)
