"""The ``couponsim`` command line."""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from couponsim.connection import DEFAULT_REDIS_URL
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import CouponsimError
from couponsim.flows import Variant
from couponsim.flows.issue import IssueOutcome
from couponsim.spike import SpikeConfig, SpikeResult, run_spike

SCENARIOS = ("spike",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="couponsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a scenario and check its invariants")
    run.add_argument("scenario", nargs="?", default="spike", choices=SCENARIOS)
    defaults = SpikeConfig()
    run.add_argument("--variant", choices=[v.value for v in Variant],
                     default=defaults.variant.value)
    run.add_argument("--users", type=int, default=defaults.users)
    run.add_argument("--stock", type=int, default=defaults.stock)
    run.add_argument("--double-click", type=float, default=defaults.double_click,
                     help="share of users who send a second request at once (0 to 1)")
    run.add_argument("--concurrency", type=int, default=defaults.concurrency,
                     help="requests in flight at once")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--coupon", default=defaults.coupon_id,
                     help="coupon ID; its keys are cleared before the run")
    run.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                     help="fake://NAME (embedded, default), redis://, rediss:// or unix://")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _print_table(result: SpikeResult) -> None:
    config = result.config
    print(f"spike: {config.users:,} users, {config.stock:,} coupons, "
          f"variant {config.variant}, seed {config.seed}: {result.requests:,} requests "
          f"in {result.wall_s:.2f} s")
    print("\nusers were told")
    for outcome in IssueOutcome:
        print(f"  {outcome.value:<12}{result.told[outcome]:>10,}")
    print("\ninvariants, judged on what Redis holds")
    for check in result.report.checks:
        print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.observed:,}")
    print("\nall invariants hold" if result.report.ok else "\nINVARIANTS BROKEN")


def _as_json(result: SpikeResult) -> str:
    return json.dumps({
        "config": asdict(result.config),
        "requests": result.requests,
        "told": {outcome.value: result.told[outcome] for outcome in IssueOutcome},
        "checks": [asdict(check) for check in result.report.checks],
        "ok": result.report.ok,
        "wall_s": round(result.wall_s, 3),
    }, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = SpikeConfig(users=args.users, stock=args.stock, double_click=args.double_click,
                             concurrency=args.concurrency, variant=Variant(args.variant),
                             seed=args.seed, coupon_id=args.coupon)
        result = run_spike(config, SyncDriver.from_url(args.redis_url))
    except CouponsimError as exc:
        print(f"couponsim: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(_as_json(result))
    else:
        _print_table(result)
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
