"""Drivers run flows: they execute each effect a flow yields and send back its result.

``advance`` is the one step every driver shares: execute the effect and send
its result into the flow, or throw the error into it, so a flow can catch a
typed failure (a database that is down, say) and decide what it means.
"""

from collections.abc import Callable
from typing import Any

from couponsim.effects import Effect
from couponsim.flows import Flow


def advance(flow: Flow[Any], effect: Effect, execute: Callable[[Effect], Any]) -> Effect:
    """Execute ``effect`` and resume ``flow`` with the outcome; StopIteration ends the flow."""
    try:
        result = execute(effect)
    except Exception as exc:  # the flow decides; unhandled, it comes straight back out
        return flow.throw(exc)
    return flow.send(result)


def finish(flow: Flow[Any], execute: Callable[[Effect], Any]) -> Any:
    """Run ``flow`` to its end, one effect at a time, and return its value."""
    try:
        effect = next(flow)
        while True:
            effect = advance(flow, effect, execute)
    except StopIteration as stop:
        return stop.value
