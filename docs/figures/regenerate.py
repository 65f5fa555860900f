"""Regenerate the README's small planner figures of each story:

    .venv/bin/python docs/figures/regenerate.py

Story 1 (black_friday) as bundled and Story 2 (overload_10x) with 50,000 users, each
once on the embedded stores (fakeredis, SQLite in a temporary directory), drawn by
the same ``couponsim.sim.figures.figure`` as ``couponsim run ... --out DIR``'s
figures.png, at a lower resolution so the repository stays small. About 4 minutes,
most of it Story 2.
"""

import sys
import tempfile
from pathlib import Path

import fakeredis

from couponsim.drivers.sync import SyncDriver
from couponsim.persistence.repository import Repository
from couponsim.sim.figures import figure
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario

STORIES = {"black_friday": [], "overload_10x": ["traffic.users=50000"]}
DPI = 72
HERE = Path(__file__).parent


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for name, overrides in STORIES.items():
            repository = Repository.from_url(f"sqlite:///{Path(scratch) / name}.sqlite")
            client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
            outcome = simulate(load_scenario(name, overrides),
                               SyncDriver(client, f"fake://{name}", repository))
            repository.engine.dispose()
            path = HERE / f"{name}.png"
            figure(outcome).savefig(path, dpi=DPI, bbox_inches="tight")
            print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
