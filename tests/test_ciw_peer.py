"""The model's M/M/c configuration against an independent peer, Ciw (a maintained
queueing-network simulator), and both against Erlang C.

Each side gives the 95% t interval of the mean wait in queue over 10 independent
replications of 4,000 customers with the first 10% dropped as warm-up; the two
intervals must overlap, and each must hold the closed-form Wq. Seeds are fixed, so
the verdict is reproducible; a correct model would still miss with some other
seeds (a 95% interval misses 1 time in 20), so a failure here after a model change
is a reason to look, not proof of a bug.

The three configurations draw their ten replications from the same seeds, so they
pass or fail together. Seed 5 failed all three once the model's Redis server took
Lindley's recursion (#17): its intervals all lay above Erlang C. Over seeds 1 to 20,
17 of 20 intervals of each configuration held Erlang C and the mean of the 20 means
was within 0.6% of it (3.989 for 4.000, 1.279 for 1.286, 0.506 for 0.509), so the
model is unbiased and seed 5 unlucky; the test now uses seed 6.
"""

from statistics import fmean

import ciw
import pytest

from couponsim.confidence import Interval, confidence_interval
from couponsim.sim.validation import replicate
from couponsim.theory import mmc_wait

CUSTOMERS, REPLICATIONS = 4_000, 10


def ciw_wait(arrival_rate: float, service_rate: float, servers: int, seed: int) -> float:
    """One Ciw replication: mean wait in queue of the customers after the warm-up."""
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=arrival_rate)],
        service_distributions=[ciw.dists.Exponential(rate=service_rate)],
        number_of_servers=[servers])
    ciw.seed(seed)
    simulation = ciw.Simulation(network)
    simulation.simulate_until_max_customers(CUSTOMERS, method="Finish")
    records = sorted(simulation.get_all_records(), key=lambda r: r.arrival_date)
    return fmean(r.waiting_time for r in records[CUSTOMERS // 10:])


def ciw_interval(arrival_rate: float, service_rate: float, servers: int) -> Interval:
    return confidence_interval([ciw_wait(arrival_rate, service_rate, servers, seed)
                                for seed in range(1, REPLICATIONS + 1)])


@pytest.mark.parametrize(("arrival_rate", "service_rate", "servers"),
                         [(0.8, 1.0, 1), (1.5, 1.0, 2), (3.0, 1.0, 4)],
                         ids=["M/M/1 rho .8", "M/M/2 rho .75", "M/M/4 rho .75"])
@pytest.mark.slow
def test_the_model_and_ciw_agree_with_each_other_and_with_erlang_c(
        arrival_rate: float, service_rate: float, servers: int) -> None:
    expected = mmc_wait(arrival_rate, service_rate, servers)
    peer = ciw_interval(arrival_rate, service_rate, servers)
    # the model counts in ms: a rate per ms and a service time in ms keep the same numbers
    model = replicate(arrival_rate, 1 / service_rate, servers, requests=CUSTOMERS,
                      replications=REPLICATIONS, seed=6)
    assert model.overlaps(peer), (model, peer)
    assert expected in model and expected in peer, (expected, model, peer)
