"""Wall time of `couponsim run SCENARIO` on the embedded defaults (fakeredis, SQLite).

Targets from issue #6: Story 1 hardened under 10 s, Story 1 seed under 30 s,
Story 2 hardened under 60 s. Each run is a fresh process, as a user would start it.

    python benchmarks/simulation_wall_time.py [--story2-users N]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = [("black_friday", "hardened", None, 10), ("black_friday", "seed", None, 30),
        ("overload_10x", "hardened", None, 60)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--story2-users", type=int,
                        help="fewer users for Story 2 (the full 500,000 is slow, see the note)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    print(f"{'scenario':<14}{'variant':<10}{'users':>9}{'wall s':>9}{'target s':>10}  exit")
    for scenario, variant, users, target in RUNS:
        if scenario == "overload_10x" and args.story2_users:
            users = args.story2_users
        with tempfile.TemporaryDirectory() as scratch:
            command = [sys.executable, "-m", "couponsim.cli", "run", scenario, "--variant",
                       variant, "--json", "--db-url", f"sqlite:///{Path(scratch) / 'b.sqlite'}"]
            if users:
                command += ["--users", str(users)]
            started = time.perf_counter()
            try:
                result = subprocess.run(command, capture_output=True, text=True,
                                        timeout=args.timeout, check=False)
                code = str(result.returncode)
            except subprocess.TimeoutExpired:
                code = f"timeout after {args.timeout:.0f} s"
            wall = time.perf_counter() - started
        shown = f"{users:,}" if users else "default"
        print(f"{scenario:<14}{variant:<10}{shown:>9}{wall:>9.1f}{target:>10}  {code}")


if __name__ == "__main__":
    main()
