"""Closed-form queueing results, to check the simulation against before trusting it.

λ arrival rate, μ service rate per server, c servers, rho = λ/(cμ) < 1. Erlang B
uses the stable recursion B0 = 1, Bk = a*B(k-1)/(k + a*B(k-1)) with a = λ/μ.
No maintained small Python library fits (REFERENCE.md), hence these few lines.
"""

from couponsim.errors import InvalidInput


def _stable(arrival_rate: float, service_rate: float, servers: int = 1) -> float:
    if arrival_rate <= 0 or service_rate <= 0 or servers < 1:
        raise InvalidInput("rates must be positive and servers at least 1")
    utilisation = arrival_rate / (servers * service_rate)
    if utilisation >= 1:
        raise InvalidInput(f"no steady state: utilisation {utilisation:.3f} >= 1")
    return utilisation


def erlang_b(offered_load: float, servers: int) -> float:
    """Probability that an arrival finds all ``servers`` busy, with no waiting room."""
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return blocking


def erlang_c(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Probability that an arrival has to wait (M/M/c)."""
    utilisation = _stable(arrival_rate, service_rate, servers)
    blocking = erlang_b(arrival_rate / service_rate, servers)
    return blocking / (1 - utilisation * (1 - blocking))


def mmc_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in queue, Wq, for M/M/c (M/M/1 with ``servers=1``)."""
    return erlang_c(arrival_rate, service_rate, servers) / (
        servers * service_rate - arrival_rate)


def mmc_sojourn(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in the system, W = Wq + 1/μ."""
    return mmc_wait(arrival_rate, service_rate, servers) + 1 / service_rate


def md1_wait(arrival_rate: float, service_time: float) -> float:
    """Mean time in queue for M/D/1: rho / (2μ(1-rho))."""
    utilisation = _stable(arrival_rate, 1 / service_time)
    return utilisation * service_time / (2 * (1 - utilisation))


def littles_law_length(arrival_rate: float, mean_time: float) -> float:
    """L = λW: the mean number in a stable system."""
    return arrival_rate * mean_time


def spike_finish(requests: int, service_time: float) -> tuple[float, float]:
    """N requests at once through one server of fixed service time s: the last finishes
    at N*s, and the mean wait in queue is (N-1)*s/2. A spike is transient, not steady."""
    if requests < 1 or service_time <= 0:
        raise InvalidInput("a spike needs at least one request and a positive service time")
    return requests * service_time, (requests - 1) * service_time / 2
