"""The effects a flow yields: descriptions of I/O, executed by a driver.

A flow never touches a socket or a clock; it yields one of these and receives
the result. Each yield is one network round trip, which is where a driver may
interleave other flows.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One Redis command, e.g. ``Command("GET", ("event:active:{c1}",))``."""

    name: str
    args: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Script:
    """One call of a script from lua/ by name, with its KEYS and ARGV."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str | int, ...] = ()


Effect = Command | Script
