"""The queueing formulas against published values; the model is checked against them."""

import pytest
import simpy

from couponsim.confidence import confidence_interval, t_975
from couponsim.effects import Command, Effect
from couponsim.errors import InvalidInput
from couponsim.sim.components import RedisServer
from couponsim.sim.validation import replicate
from couponsim.theory import (
    erlang_b,
    erlang_c,
    littles_law_length,
    md1_wait,
    mmc_sojourn,
    mmc_wait,
    spike_finish,
)


def test_the_erlang_c_check_value() -> None:
    """c = 4, λ = 3, μ = 1 gives C = 0.5094 and Wq = 0.5094 (REFERENCE.md)."""
    assert erlang_c(3, 1, 4) == pytest.approx(0.5094, abs=5e-5)
    assert mmc_wait(3, 1, 4) == pytest.approx(0.5094, abs=5e-5)


def test_mm1_matches_its_closed_forms() -> None:
    arrival, service = 0.8, 1.0
    rho = arrival / service
    assert mmc_wait(arrival, service, 1) == pytest.approx(rho / (service - arrival))
    assert mmc_sojourn(arrival, service, 1) == pytest.approx(1 / (service - arrival))
    assert littles_law_length(arrival, mmc_sojourn(arrival, service, 1)) == \
        pytest.approx(rho / (1 - rho))


def test_erlang_b_published_values() -> None:
    assert erlang_b(1.0, 1) == pytest.approx(0.5)
    assert erlang_b(2.0, 2) == pytest.approx(0.4)
    assert erlang_b(10.0, 10) == pytest.approx(0.2146, abs=5e-5)


def test_md1_waits_half_as_long_as_mm1() -> None:
    assert md1_wait(0.5, 1.0) == pytest.approx(mmc_wait(0.5, 1.0, 1) / 2)


@pytest.mark.parametrize("args", [(1.0, 1.0, 1), (5.0, 1.0, 4), (0.0, 1.0, 1), (1.0, 1.0, 0)])
def test_no_steady_state_is_an_error(args: tuple[float, float, int]) -> None:
    with pytest.raises(InvalidInput):
        mmc_wait(*args)


def test_a_spike_through_one_server_in_simpy_finishes_at_n_times_s() -> None:
    """The exact transient check, on SimPy itself: N requests at T0, service s."""
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    waits: list[float] = []
    finished: list[float] = []

    def request():  # type: ignore[no-untyped-def]
        arrived = env.now
        with server.request() as slot:
            yield slot
            waits.append(env.now - arrived)
            yield env.timeout(0.25)
        finished.append(env.now)

    for _ in range(1_000):
        env.process(request())
    env.run()
    last, mean_wait = spike_finish(1_000, 0.25)
    assert max(finished) == pytest.approx(last)
    assert sum(waits) / len(waits) == pytest.approx(mean_wait)


CASES = [
    ("M/M/1", dict(arrival_rate_per_ms=0.8, service_ms=1.0), mmc_wait(0.8, 1.0, 1)),
    ("M/M/4", dict(arrival_rate_per_ms=3.0, service_ms=1.0, servers=4), mmc_wait(3.0, 1.0, 4)),
    ("M/D/1", dict(arrival_rate_per_ms=0.5, service_ms=1.0, exponential_service=False),
     md1_wait(0.5, 1.0)),
]


@pytest.mark.parametrize(("name", "config", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.slow
def test_the_models_redis_server_agrees_with_queueing_theory(
        name: str, config: dict[str, float], expected: float) -> None:
    """Mean wait in queue through the model's own Redis component: the 95% interval of
    10 replications holds the closed form. A correct model misses now and then (5%);
    requiring two of three independent intervals keeps a false alarm under 1%."""
    intervals = [replicate(**config, seed=seed) for seed in (11, 12, 13)]  # type: ignore[arg-type]
    assert sum(expected in interval for interval in intervals) >= 2, (name, intervals)


def test_the_models_redis_server_serves_a_spike_in_n_times_s() -> None:
    env = simpy.Environment()
    redis = RedisServer(env, lambda pings: ["PONG"] * len(pings), lambda _effect: 0.25)
    finished: list[float] = []

    def request():  # type: ignore[no-untyped-def]
        yield from redis.serve(Command("PING"))
        finished.append(env.now)

    for _ in range(1_000):
        env.process(request())
    env.run()
    last, mean_wait = spike_finish(1_000, 0.25)
    assert max(finished) == pytest.approx(last)
    assert sum(redis.waits_ms) / 1_000 == pytest.approx(mean_wait)


def _echo_server(env: simpy.Environment, calls: list[tuple[float, list[str]]]
                 ) -> RedisServer:
    """A server of 1 ms per effect whose store records each call: when, and what."""

    def execute_many(effects: list[Effect]) -> list[object]:
        names = [str(e.args[0]) for e in effects if isinstance(e, Command)]
        calls.append((env.now, names))
        return [ValueError(name) if name == "bad" else name.upper() for name in names]

    return RedisServer(env, execute_many, lambda _effect: 1.0)


def _ask(env: simpy.Environment, redis: RedisServer, answers: dict[str, tuple[float, object]],
         name: str, at: float):  # type: ignore[no-untyped-def]
    yield env.timeout(at)
    try:
        answer = yield from redis.serve(Command("ECHO", (name,)))
    except ValueError:
        answer = "error"
    answers[name] = (env.now, answer)


def test_effects_run_when_a_reply_is_due_with_every_effect_whose_turn_is_fixed() -> None:
    """Nothing runs before a reply is due; then every effect that has arrived runs, in
    order, as one call of the store (one arriving later cannot come before them).
    Each still answers after its own turn, and an error answers its own effect only."""
    env = simpy.Environment()
    calls: list[tuple[float, list[str]]] = []
    redis = _echo_server(env, calls)
    answers: dict[str, tuple[float, object]] = {}
    for name in ("a", "bad", "c"):
        env.process(_ask(env, redis, answers, name, 0.0))
    env.process(_ask(env, redis, answers, "late", 0.5))
    env.run()
    assert calls == [(1.0, ["a", "bad", "c", "late"])]
    assert answers == {"a": (1.0, "A"), "bad": (2.0, "error"), "c": (3.0, "C"),
                       "late": (4.0, "LATE")}
    assert redis.waits_ms == [0.0, 1.0, 2.0, 2.5]


@pytest.mark.parametrize("reader", ["booked look at 1.5", "watching until 2.5"])
def test_a_reader_from_outside_sees_the_store_as_the_clock_has_it(reader: str) -> None:
    """A reader who booked a look, or watches, finds exactly the effects that started
    by then, none that start later, however the replies fall due."""
    env = simpy.Environment()
    calls: list[tuple[float, list[str]]] = []
    redis = _echo_server(env, calls)
    answers: dict[str, tuple[float, object]] = {}
    seen: list[list[str]] = []

    def booked():  # type: ignore[no-untyped-def]
        redis.will_look_at(1.5)
        yield env.timeout(1.5)
        redis.look()
        seen.append([name for _at, names in calls for name in names])

    def watching():  # type: ignore[no-untyped-def]
        with redis.watched():
            yield env.timeout(1.5)
            redis.look()
            seen.append([name for _at, names in calls for name in names])
            yield env.timeout(1.0)

    env.process(booked() if reader.startswith("booked") else watching())
    for name in ("a", "bad", "c"):
        env.process(_ask(env, redis, answers, name, 0.0))
    env.process(_ask(env, redis, answers, "late", 0.5))
    env.run()
    assert seen == [["a", "bad"]], "a started at 0 and bad at 1; c starts at 2"
    assert calls == [(1.0, ["a", "bad"]), (3.0, ["c", "late"])]
    assert answers["late"] == (4.0, "LATE")


def test_a_confidence_interval_needs_two_replications() -> None:
    with pytest.raises(InvalidInput):
        confidence_interval([1.0])
    interval = confidence_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.low < 2.0 < interval.high


def test_past_the_t_table_the_interval_stays_on_the_wide_side() -> None:
    assert t_975(4) == 2.776 and t_975(24) == 2.086 and t_975(35) == 2.042
    assert t_975(10_000) == 1.980 > 1.96
