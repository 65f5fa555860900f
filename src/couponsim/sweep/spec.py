"""Sweep files (TOML or YAML, in data/sweeps/): what to vary, how often, what to measure.

A sweep file names a base scenario, fixed overrides, the parameters to vary
(each a list of values or an inclusive range; the grid is their product), the
replications per point, the metrics, and optionally a target to search for.
Everything is checked when the file is read, including every grid point's
scenario, so a typo fails in a second with the field named, not after an hour
of runs.

    name = "consumers_for_p99"
    scenario = "black_friday"            # bundled name, or a path beside this file
    set = ["traffic.users=10000"]        # fixed overrides, as `couponsim run --set`
    seed = 2026                          # one sweep seed; every run's streams come from it
    replications = 5
    metrics = ["p99_stored_s", "sell_out_s"]
    target = "p99_stored_s <= 10"        # optional, with [search]

    [parameters]
    "consumers.count" = [1, 2, 4]                            # a list
    "consumers.batch_size" = {from = 50, to = 200, step = 50}  # a range, both ends in

    [search]                             # bisection for the smallest value meeting target
    parameter = "consumers.count"
    low = 1
    high = 16
    resolution = 1                       # optional: 1 for whole numbers
"""

import itertools
import json
import math
import operator
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from couponsim.bundled import bundled_dir
from couponsim.confidence import Interval
from couponsim.errors import InvalidInput
from couponsim.sim.scenario import Scenario, load_scenario
from couponsim.sweep.metrics import METRICS

SUFFIXES = (".toml", ".yaml", ".yml")
_TARGET = re.compile(r"^\s*(\w+)\s*(<=|>=)\s*(\S+)\s*$")
_KNOWN = {"name", "description", "scenario", "set", "seed", "replications", "metrics",
          "parameters", "target", "search"}
_COMPARE: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}

Value = int | float | str | bool
Point = tuple[tuple[str, Value], ...]
"""One grid point: (parameter, value) pairs in the file's order; hashable, so it can key
a table row and a stored run."""


@dataclass(frozen=True)
class Target:
    metric: str
    comparison: str
    """``<=`` (the metric must stay at most ``value``) or ``>=``."""
    value: float

    def met_by(self, interval: Interval) -> bool:
        """Met *with confidence*: the whole 95% interval is on the right side, not
        just the mean."""
        edge = interval.high if self.comparison == "<=" else interval.low
        return _COMPARE[self.comparison](edge, self.value)

    def missed_by(self, interval: Interval) -> bool:
        """Missed *with confidence*: the whole interval is on the wrong side."""
        edge = interval.low if self.comparison == "<=" else interval.high
        return not _COMPARE[self.comparison](edge, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.comparison} {self.value:g}"


@dataclass(frozen=True)
class Search:
    parameter: str
    low: float
    high: float
    resolution: float
    """Bisection stops when the bracket is this narrow; 1 for whole numbers."""

    @property
    def whole(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    scenario: str
    """A bundled scenario name or a resolved path to a scenario file."""
    overrides: tuple[str, ...]
    parameters: tuple[tuple[str, tuple[Value, ...]], ...]
    replications: int
    seed: int
    metrics: tuple[str, ...]
    target: Target | None = None
    search: Search | None = None

    def points(self) -> list[Point]:
        """The grid: every combination of the parameters' values, first parameter slowest."""
        names = [name for name, _ in self.parameters]
        return [tuple(zip(names, values, strict=True))
                for values in itertools.product(*(values for _, values in self.parameters))]

    def scenario_at(self, point: Point, seed: int) -> Scenario:
        """The base scenario with the fixed overrides, the point's values and ``seed``."""
        overrides = [*self.overrides, *(f"{name}={json.dumps(value)}" for name, value in point)]
        return replace(load_scenario(self.scenario, overrides), seed=seed)

    def with_replications(self, replications: int) -> "SweepSpec":
        return replace(self, replications=_replications(replications))


def sweep_names() -> list[str]:
    return sorted(path.stem for path in bundled_dir("sweeps").iterdir()
                  if path.suffix in SUFFIXES)


def load_sweep(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = (),
               replications: int | None = None, target: str | None = None) -> SweepSpec:
    """A bundled sweep by name, or a sweep file by path, checked from top to bottom.

    ``overrides`` are added after the file's own ``set`` (a notebook shrinking the
    users, say); ``replications`` and ``target`` replace the file's (a smaller crowd
    needs a tighter target to ask the same question).
    """
    path = _locate(name_or_path)
    try:
        text = path.read_text()
        document = (tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text))
    except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read sweep {path}: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"sweep {path}: expected a table of fields at the top")
    if target is not None:
        document["target"] = target
    try:
        spec = _build(document, path.parent, tuple(overrides))
    except InvalidInput as exc:
        raise InvalidInput(f"sweep {path}: {exc}") from None
    return spec if replications is None else spec.with_replications(replications)


def _locate(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix:
        if path.suffix not in SUFFIXES:
            raise InvalidInput(f"sweep {path}: a sweep file is .toml, .yaml or .yml")
        return path
    for suffix in SUFFIXES:
        bundled = bundled_dir("sweeps") / f"{name_or_path}{suffix}"
        if bundled.is_file():
            return bundled
    raise InvalidInput(f"no sweep {str(name_or_path)!r}; bundled: {', '.join(sweep_names())}")


def _build(document: dict[str, Any], home: Path, extra: tuple[str, ...]) -> SweepSpec:
    unknown = sorted(set(document) - _KNOWN)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(_KNOWN))})")
    name = _text(document, "name", required=True)
    scenario = _text(document, "scenario", required=True)
    if Path(scenario).suffix:
        scenario = str((home / scenario).resolve())
    fixed = document.get("set", [])
    if not isinstance(fixed, list) or not all(isinstance(item, str) for item in fixed):
        raise InvalidInput('set must be a list of "section.field=value" strings')
    seed = document.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be a whole number >= 0, got {seed!r}")
    replications = _replications(document.get("replications", 5))
    parameters = _parameters(document.get("parameters", {}))
    target = _target(document.get("target"))
    metrics = _metrics(document.get("metrics"), target)
    search = _search(document.get("search"), target)
    if not parameters and search is None:
        raise InvalidInput("nothing to run: give [parameters], or a target and [search]")
    spec = SweepSpec(name, _text(document, "description"), scenario, (*fixed, *extra),
                     parameters, replications, seed, metrics, target, search)
    for point in spec.points():
        spec.scenario_at(point, seed)       # every grid point must make a valid scenario
    if search is not None:
        for bound in (search.low, search.high):
            spec.scenario_at(((search.parameter, bound),), seed)
    return spec


def _text(document: dict[str, Any], field: str, required: bool = False) -> str:
    value = document.get(field, "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"{field} must be {'a non-empty' if required else 'a'} string, "
                           f"got {value!r}")
    return value


def _replications(given: object) -> int:
    if isinstance(given, bool) or not isinstance(given, int) or given < 2:
        raise InvalidInput(f"replications must be a whole number >= 2 (a confidence "
                           f"interval needs two), got {given!r}")
    return given


def _parameters(table: object) -> tuple[tuple[str, tuple[Value, ...]], ...]:
    if not isinstance(table, dict):
        raise InvalidInput("parameters must be a table: section.field = [values] or "
                           "{from, to, step}")
    parameters = []
    for name, given in table.items():
        if name == "seed":
            raise InvalidInput("seed is not a parameter: replications draw their own seeds")
        values = tuple(_range(name, given) if isinstance(given, dict)
                       else given if isinstance(given, list) else ())
        if not values or not all(isinstance(v, int | float | str) for v in values):
            raise InvalidInput(f"parameters.{name} must be a non-empty list of values or a "
                               f"{{from, to, step}} range, got {given!r}")
        if len(set(values)) != len(values):
            raise InvalidInput(f"parameters.{name} lists a value twice")
        parameters.append((name, values))
    return tuple(parameters)


def _range(name: str, given: dict[str, Any]) -> list[Value]:
    if set(given) != {"from", "to", "step"}:
        raise InvalidInput(f"parameters.{name}: a range is {{from, to, step}}, got {given!r}")
    start, stop, step = given["from"], given["to"], given["step"]
    if not all(_number(v) for v in (start, stop, step)) or step <= 0 or stop < start:
        raise InvalidInput(f"parameters.{name}: a range needs numbers with from <= to and "
                           f"step > 0, got {given!r}")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > 10_000:
        raise InvalidInput(f"parameters.{name}: {count:,} values; a grid that large is a typo")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return list(range(start, stop + 1, step))
    return [round(start + n * step, 12) for n in range(count)]


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _target(given: object) -> Target | None:
    if given is None:
        return None
    match = _TARGET.match(given) if isinstance(given, str) else None
    if match is None:
        raise InvalidInput(f'target must read "METRIC <= VALUE" or "METRIC >= VALUE", '
                           f"got {given!r}")
    metric, comparison, raw = match.groups()
    if metric not in METRICS:
        raise InvalidInput(f"target: unknown metric {metric!r} (known: {', '.join(METRICS)})")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"target: {raw!r} is not a number") from None
    return Target(metric, comparison, value)


def _metrics(given: object, target: Target | None) -> tuple[str, ...]:
    if not isinstance(given, list) or not given or not all(isinstance(m, str) for m in given):
        raise InvalidInput(f"metrics must be a non-empty list of names "
                           f"(known: {', '.join(METRICS)})")
    unknown = [m for m in given if m not in METRICS]
    if unknown:
        raise InvalidInput(f"unknown metric(s) {', '.join(unknown)} "
                           f"(known: {', '.join(METRICS)})")
    wanted = list(dict.fromkeys(given))
    if target is not None and target.metric not in wanted:
        wanted.append(target.metric)
    return tuple(wanted)


def _search(given: object, target: Target | None) -> Search | None:
    if given is None:
        return None
    if target is None:
        raise InvalidInput("[search] needs a target to search for")
    if not isinstance(given, dict) or not {"parameter", "low", "high"} <= set(given) \
            or not set(given) <= {"parameter", "low", "high", "resolution"}:
        raise InvalidInput("search is a table: parameter, low, high and optionally resolution")
    parameter, low, high = given["parameter"], given["low"], given["high"]
    if not isinstance(parameter, str) or parameter == "seed":
        raise InvalidInput(f"search.parameter must name a scenario field, got {parameter!r}")
    if not (_number(low) and _number(high)) or low >= high:
        raise InvalidInput(f"search: low and high must be numbers with low < high, "
                           f"got {low!r} and {high!r}")
    whole = isinstance(low, int) and isinstance(high, int)
    resolution = given.get("resolution", 1 if whole else 0)
    if not _number(resolution) or not resolution > 0 or (whole and not isinstance(resolution, int)):
        raise InvalidInput("search.resolution must be a number above 0 (a whole number "
                           "for whole bounds); it is required for fractional bounds")
    return Search(parameter, low, high, resolution)
