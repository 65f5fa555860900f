"""Where the files the package ships beside its code are: lua/, data/scenarios/,
data/sweeps/ and data/profiles/.

They live at the repository root so they read as part of the design; the wheel
copies them into the package (pyproject.toml, force-include). An editable
install runs from src/, so there they are found two levels up.
"""

from pathlib import Path

_IN_WHEEL = {"lua": "lua", "scenarios": "scenarios", "sweeps": "sweeps",
             "profiles": "profiles"}
_IN_REPOSITORY = {"lua": "lua", "scenarios": "data/scenarios", "sweeps": "data/sweeps",
                  "profiles": "data/profiles"}


def bundled_dir(name: str) -> Path:
    """The directory ``name`` (``lua``, ``scenarios``, ``sweeps`` or ``profiles``),
    installed or in a source checkout."""
    packaged = Path(__file__).with_name(_IN_WHEEL[name])
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / _IN_REPOSITORY[name]
