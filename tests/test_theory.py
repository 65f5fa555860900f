"""The queueing formulas against published values; the model is checked against them."""

import pytest
import simpy

from couponsim.errors import InvalidInput
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
