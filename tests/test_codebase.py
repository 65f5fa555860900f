"""The project's own rules, checked by the tools made for them."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_import_contracts_hold() -> None:
    """Flows stay sans-IO and layers point one way (contracts in pyproject.toml)."""
    result = _run(sys.executable, "-m", "importlinter.cli", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_passes() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def _normal(requirement: str) -> str:
    name = re.split(r"[<>=\[ ;]", requirement.strip(), maxsplit=1)[0]
    return {"redis-py": "redis"}.get(name.lower(), name.lower())


CONDA_ONLY = {"redis-server"}
"""What environment.yml gives a conda user that is no Python package: the binary that
``local://`` Redis URLs start."""


def test_environment_yml_and_pyproject_list_the_same_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_normal(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_normal(r) for r in extra}
    environment = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    listed = set()
    for line in environment.splitlines():
        match = re.match(r"\s+- ([A-Za-z].*)$", line)
        if match and not match.group(1).startswith(("pip", "python=")):
            listed.add(_normal(match.group(1)))
    assert listed == wanted | CONDA_ONLY
