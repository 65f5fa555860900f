"""Latency profiles (data/profiles/, or a file): the costs ``couponsim calibrate``
measured on a stack, for a scenario to name instead of hand-set ``[latency]`` fields.

Only the profile's ``[latency]`` table is charged by the model; its other tables
(where and when it was measured, percentiles, the server's own figures) are kept
for the reader, who needs to know what a profile stands for before trusting a run
made with it.
"""

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from couponsim.bundled import bundled_dir
from couponsim.errors import InvalidInput


def profile_names() -> list[str]:
    return sorted(path.stem for path in bundled_dir("profiles").glob("*.toml"))


def profile_path(name_or_path: str) -> Path:
    """A bundled profile by name, or a TOML file by path (relative to ``cwd``)."""
    path = Path(name_or_path)
    if path.suffix:
        return path
    bundled = bundled_dir("profiles") / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise InvalidInput(f"no latency profile {name_or_path!r}; bundled: "
                           + ", ".join(profile_names()))
    return bundled


def load_profile(name_or_path: str) -> dict[str, Any]:
    """The profile's ``[latency]`` fields (checked by the scenario that uses them)."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise InvalidInput(f"latency.profile must name a profile or a file, "
                           f"got {name_or_path!r}")
    path = profile_path(name_or_path)
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read latency profile {path}: {exc}") from None
    latency = document.get("latency")
    if not isinstance(latency, dict) or not latency:
        raise InvalidInput(f"latency profile {path} has no [latency] table")
    if "profile" in latency:
        raise InvalidInput(f"latency profile {path}: a profile cannot name another")
    return latency


def write_profile(path: Path, heading: str, latency: dict[str, float],
                  tables: dict[str, dict[str, Any]]) -> None:
    """``heading`` as comment lines, then ``[latency]`` first (what the model reads),
    then the other tables."""
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in heading.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comment + "\n" + tomli_w.dumps({"latency": latency, **tables}))
