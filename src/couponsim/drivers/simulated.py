"""The SimPy driver: a flow as a SimPy process, in virtual time.

Each effect is executed at the moment the process reaches it and its result
comes back after the latency the model charges for it, so concurrent flows
interleave at every round trip as they would on a network. ``Now`` reads the
simulation clock (milliseconds) and ``Pause`` waits on it. The effects
themselves run against a real store (fakeredis or Redis, a database) through
another driver's ``execute``; the simulation only decides when.
"""

from collections.abc import Callable, Generator
from typing import Any

import simpy

from couponsim.effects import Effect, Now, Pause
from couponsim.flows import Flow

Latency = Callable[[Effect, float], float]
"""Milliseconds an effect costs, given the time it starts."""

Perform = Callable[[Effect], Generator[simpy.Event, Any, Any]]
"""Carry out one effect in simulated time (queues, latencies) and return its result."""


def flow_process(env: simpy.Environment, flow: Flow[Any],
                 perform: Perform) -> Generator[simpy.Event, Any, Any]:
    """Drive ``flow`` inside ``env``; use as ``env.process(flow_process(...))``.

    ``Now`` reads the simulation clock (whole milliseconds) and ``Pause`` waits on
    it; every other effect is handed to ``perform``.
    """
    try:
        effect = next(flow)
        while True:
            if isinstance(effect, Now):
                effect = flow.send(int(env.now))
                continue
            if isinstance(effect, Pause):
                yield env.timeout(effect.seconds * 1000)
                effect = flow.send(None)
                continue
            try:
                result = yield from perform(effect)
            except Exception as exc:
                effect = flow.throw(exc)
                continue
            effect = flow.send(result)
    except StopIteration as stop:
        return stop.value


def with_latency(env: simpy.Environment, execute: Callable[[Effect], Any],
                 latency: Latency) -> Perform:
    """The simplest model: each effect runs at once and answers after ``latency``."""

    def perform(effect: Effect) -> Generator[simpy.Event, Any, Any]:
        cost = latency(effect, env.now)
        try:
            result = execute(effect)
        except Exception:
            yield env.timeout(cost)
            raise
        yield env.timeout(cost)
        return result

    return perform
