"""The effects a flow yields: descriptions of I/O, executed by a driver.

A flow never touches a socket, a database or a clock; it yields one of these
and receives the result. Each yield is one round trip, which is where a driver
may interleave other flows. An effect that fails is thrown back into the flow
as the driver's typed error (``RedisUnavailable``, ``DatabaseUnavailable``,
``PersistenceError``...), so a flow can decide what a failure means.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One Redis command, e.g. ``Command("GET", ("event:active:{c1}",))``."""

    name: str
    args: tuple[object, ...] = ()
    options: tuple[tuple[str, object], ...] = ()
    """Options for redis-py's reply parser, e.g. ``(("parse_detail", True),)`` for XPENDING."""


@dataclass(frozen=True)
class BatchShape:
    """How a script that takes a batch of requests (lua/issue.lua, lua/gcra.lua) lays
    out one call: the first ``shared_keys`` KEYS and ``shared_args`` ARGV are what
    every request of the batch shares, then each request has ``keys_each`` KEYS and
    ``args_each`` ARGV of its own, in order, and ``reply_each`` values in the reply.

    Two calls of one script with the same shared part are one call of both batches,
    one after the other: how a driver sends the calls of concurrent requests as one.
    """

    shared_keys: int
    shared_args: int
    keys_each: int
    args_each: int
    reply_each: int


@dataclass(frozen=True)
class Script:
    """One call of a script from lua/ by name, with its KEYS and ARGV."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str | int | float, ...] = ()
    shape: BatchShape | None = None
    """For a script that takes a batch: how its call is laid out."""

    @property
    def requests(self) -> int:
        """The requests this call decides: one, or its batch's (every batched script
        gives each request an argument of its own)."""
        shape = self.shape
        return 1 if shape is None else (len(self.args) - shape.shared_args) // shape.args_each


@dataclass(frozen=True)
class Pipeline:
    """Several Redis commands sent in one round trip; the result is the list of
    their replies. ``atomic`` wraps them in MULTI/EXEC, for a consistent
    snapshot of keys of one slot."""

    commands: tuple[Command, ...]
    atomic: bool = False


@dataclass(frozen=True)
class DbCall:
    """One call of the repository (couponsim.persistence), e.g. one transaction."""

    method: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True)
class Pause:
    """Wait this long on the driver's clock (wall time, or virtual time in a simulation)."""

    seconds: float


@dataclass(frozen=True)
class Now:
    """Ask the driver's clock for the time, in whole milliseconds: a flow that
    measures a duration (the gateway's time limiter) must not read a clock itself."""


Effect = Command | Script | Pipeline | DbCall | Pause | Now
