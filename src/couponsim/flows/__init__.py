"""Business operations as generators of effects (sans-IO).

A flow yields :mod:`couponsim.effects` and receives their results; it imports
no I/O library, so the same flow runs under the sync driver, an asyncio
driver, a SimPy process or the schedule explorer. Each operation exists in two
variants: ``seed`` (the design document's flow as written, flaws included) and
``hardened`` (this project's fix).
"""

from collections.abc import Generator
from enum import StrEnum
from typing import Any, TypeVar

from couponsim.effects import Effect

T = TypeVar("T")

Flow = Generator[Effect, Any, T]
"""A flow that yields effects, is sent their results and returns a ``T``."""


class Variant(StrEnum):
    SEED = "seed"
    HARDENED = "hardened"
