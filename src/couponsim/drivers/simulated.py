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


def flow_process(env: simpy.Environment, flow: Flow[Any], execute: Callable[[Effect], Any],
                 latency: Latency) -> Generator[simpy.Event, Any, Any]:
    """Drive ``flow`` inside ``env``; use as ``env.process(flow_process(...))``."""
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
            cost = latency(effect, env.now)
            try:
                result = execute(effect)
            except Exception as exc:
                yield env.timeout(cost)
                effect = flow.throw(exc)
                continue
            yield env.timeout(cost)
            effect = flow.send(result)
    except StopIteration as stop:
        return stop.value
