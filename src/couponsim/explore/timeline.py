"""A run's timeline: one row per effect, which actor ran it, and what came back."""

import re
from dataclasses import dataclass
from typing import Any

from couponsim.effects import Command, DbCall, Effect, Now, Pause, Pipeline, Script

MAX_TEXT = 70


@dataclass(frozen=True)
class Step:
    number: int
    actor: str
    effect: str
    result: str


def describe(effect: Effect) -> str:
    """The effect as a reader would write it."""
    match effect:
        case Command(name, args, _options):
            return _clip(" ".join([name, *map(str, args)]))
        case Script(name, keys, args):
            return _clip(f"EVALSHA {name} {' '.join(keys[:2])}{' ...' if len(keys) > 2 else ''}"
                         f" [{', '.join(map(str, args[:3]))}{', ...' if len(args) > 3 else ''}]")
        case Pipeline(commands, atomic):
            return _clip(f"{'MULTI' if atomic else 'PIPELINE'} "
                         + "; ".join(describe(c) for c in commands))
        case DbCall(method, _args):
            return f"database: {method}"
        case Pause(seconds):
            return f"pause {seconds} s"
        case Now():
            return "clock"
    return repr(effect)


STREAM_ID = re.compile(r"\b\d{13}-\d+\b")


def show_result(result: Any) -> str:
    """The result as text; stream IDs (Redis's clock) are masked, so a replayed schedule
    reads the same."""
    if isinstance(result, BaseException):
        return f"raised {type(result).__name__}"
    if isinstance(result, dict) and len(result) > 3:
        return f"{{{len(result)} entries}}"
    return _clip(STREAM_ID.sub("<id>", repr(result)))


def format_timeline(steps: list[Step]) -> str:
    width = max((len(step.actor) for step in steps), default=5)
    lines = [f"{'#':>3}  {'actor':<{width}}  {'effect':<{MAX_TEXT}}  result"]
    lines += [f"{s.number:>3}  {s.actor:<{width}}  {s.effect:<{MAX_TEXT}}  {s.result}"
              for s in steps]
    return "\n".join(lines)


def to_frame(steps: list[Step]) -> Any:
    """The timeline as a pandas DataFrame (pandas comes with the notebooks extra)."""
    import pandas as pd

    return pd.DataFrame([vars(step) for step in steps]).set_index("number")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
