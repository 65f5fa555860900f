"""Run many flows at once on one driver, one effect at a time, in a chosen order.

Between two round trips of one flow, any other in-flight flow may run: that
is what a network does to concurrent requests, and what lets the workbench
show a check-then-act race deterministically from a seed. The schedule
explorer drives the same loop with schedules chosen by hypothesis.
"""

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from couponsim.drivers import advance
from couponsim.effects import Effect
from couponsim.flows import Flow

T = TypeVar("T")


def run_interleaved(
    flows: Iterable[Flow[T]],
    execute: Callable[[Effect], Any],
    choose: Callable[[int], int],
    window: int,
) -> list[T | Exception]:
    """Run ``flows``, at most ``window`` in flight, advancing the one ``choose(n)`` picks.

    Flows are admitted in order as others finish; ``choose`` gets the number of
    flows in flight and returns the index of the one whose next effect runs.
    Returns every flow's value in the order the flows were given; a flow that
    fails has its exception in its place and the others run on, as concurrent
    requests do when one of them errs.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    waiting = iter(enumerate(flows))
    in_flight: list[tuple[int, Flow[T], Effect]] = []
    results: dict[int, T | Exception] = {}

    def admit() -> None:
        while len(in_flight) < window:
            try:
                index, flow = next(waiting)
            except StopIteration:
                return
            try:
                in_flight.append((index, flow, next(flow)))
            except StopIteration as stop:
                results[index] = stop.value
            except Exception as exc:
                results[index] = exc

    admit()
    while in_flight:
        slot = choose(len(in_flight))
        index, flow, effect = in_flight[slot]
        try:
            in_flight[slot] = (index, flow, advance(flow, effect, execute))
        except StopIteration as stop:
            results[index] = stop.value
            in_flight.pop(slot)
            admit()
        except Exception as exc:
            results[index] = exc
            in_flight.pop(slot)
            admit()
    return [results[index] for index in sorted(results)]
