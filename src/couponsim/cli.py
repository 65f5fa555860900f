"""The ``couponsim`` command line.

Exit codes: 0 all invariants hold, 1 an invariant is broken, 2 bad input or a
Redis or database that cannot be used, 70 an internal error (a bug: the
traceback is printed).
"""

import argparse
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

from tqdm import tqdm

from couponsim import names
from couponsim.calibrate import calibrate, save_profile
from couponsim.connection import DEFAULT_REDIS_URL
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.errors import CouponsimError, InvalidInput, MissingExtra, UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.explore.explorer import Store, exhaustive, search
from couponsim.explore.scenarios import SCENARIOS as SCENARIO_RACES
from couponsim.explore.timeline import format_timeline
from couponsim.flows import Variant
from couponsim.flows.consume import CrashPoint
from couponsim.flows.issue import IssueOutcome
from couponsim.flows.seed_options import DEFAULT as SEED_DEFAULTS
from couponsim.flows.seed_options import SeedOptions, UniqueKey
from couponsim.persistence.database import DEFAULT_DATABASE_URL
from couponsim.persistence.repository import Repository
from couponsim.report import build_report
from couponsim.sim.results import save
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario, scenario_names
from couponsim.spike import SpikeConfig, SpikeResult, run_spike
from couponsim.verify import InvariantReport, check_invariants

SPIKE = "spike"
SERVICE_REDIS_URL = "fake://service"
SERVICE_DATABASE_URL = "sqlite:///couponsim-service.sqlite"
"""The service's own embedded stores: ``run`` writes ``couponsim.sqlite``, and a service
on the same file would meet the simulation's coupons (its winners all compensated)."""
UNTIL_DECISIVE = 20
EXIT_BROKEN, EXIT_UNUSABLE, EXIT_BUG = 1, 2, 70


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="couponsim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="run a scenario and check its invariants",
        description="Simulate a scenario of data/scenarios in virtual time (SimPy), or run "
                    "the spike job (interleaved requests in wall time).")
    run.add_argument("scenario", nargs="?", default=SPIKE,
                     help=f"{SPIKE} (default), a bundled scenario ({', '.join(scenario_names())}) "
                          "or the path of a scenario file (.toml)")
    run.add_argument("--variant", choices=[v.value for v in Variant],
                     help="seed or hardened (default: the scenario's)")
    run.add_argument("--users", type=int, help="how many users (default: the scenario's)")
    run.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    simulation = run.add_argument_group("simulation scenarios")
    simulation.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                            help="override any field of the scenario file, e.g. "
                                 "consumers.count=4 (repeatable)")
    simulation.add_argument("--out", type=Path,
                            help="write requests.csv, timeline.csv, summary.json and "
                                 "figures.png here")
    spike = run.add_argument_group("the spike job")
    spike.add_argument("--stock", type=int)
    spike.add_argument("--double-click", type=float,
                       help="share of users who send a second request at once (0 to 1)")
    spike.add_argument("--concurrency", type=int, help="requests in flight at once")
    spike.add_argument("--coupon", help="coupon ID; its keys and rows are cleared first")
    spike.add_argument("--batch-size", type=int,
                       help="queue entries per hardened consumer batch")
    spike.add_argument("--crash-at", choices=[p.value for p in CrashPoint],
                       help="make the first consumer batch die here; a restarted one drains")
    spike.add_argument("--unique-key", choices=get_args(UniqueKey),
                       help="seed variant: the user-coupon table's unique key, which the "
                            "document never shows (default user_coupon; none: a double "
                            "click's two coupons are both stored)")
    _add_store_options(run)

    verify = commands.add_parser("verify", help="check the invariants of a live system")
    verify.add_argument("--coupon", required=True)
    _add_store_options(verify)

    explore = commands.add_parser("explore", help="hunt races: search schedules of a scenario")
    explore.add_argument("scenario", choices=sorted(SCENARIO_RACES))
    explore.add_argument("--variant", choices=[v.value for v in Variant],
                         default=Variant.HARDENED.value)
    explore.add_argument("--examples", type=int, default=2_000,
                         help="schedules hypothesis may try (it stops early when it has "
                              "tried every distinct one)")
    explore.add_argument("--exhaustive", action="store_true",
                         help="run every schedule instead (small scenarios)")
    explore.add_argument("--limit", type=int, default=100_000,
                         help="most schedules the exhaustive walk runs")
    explore.add_argument("--redis-url", default="fake://",
                         help="fake:// (a fresh FakeServer per schedule) or a real Redis, "
                              "flushed before every schedule: use a scratch database")

    sweep = commands.add_parser(
        "sweep", help="run a sweep file: replicated runs, confidence intervals, a target search",
        description="Run every point x replication of a sweep file (data/sweeps/ or a path), "
                    "on local processes or a Dask cluster; finished runs are kept under --out "
                    "and skipped when the sweep runs again.")
    sweep.add_argument("file", help="a bundled sweep name or a .toml/.yaml file")
    sweep.add_argument("--replications", type=int, help="runs per point (default: the file's)")
    sweep.add_argument("--workers", type=int,
                       help="local worker processes (default: one per core)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster of this scheduler, e.g. tcp://host:8786")
    sweep.add_argument("--out", type=Path,
                       help="where runs, tables and plots go (default: out/sweeps/NAME)")
    sweep.add_argument("--until-decisive", type=int, nargs="?", const=UNTIL_DECISIVE,
                       metavar="MAX",
                       help="add replications to points whose verdict on the target is "
                            "inconclusive (doubling, same seeds as the other points) until "
                            f"decided or MAX runs per point (default {UNTIL_DECISIVE})")

    report = commands.add_parser(
        "report", help="execute every notebook with larger sizes and export it to HTML",
        description="Execute notebooks/*.ipynb (papermill) with the report's sizes and "
                    "export each, figures included, to one HTML file (nbconvert). Needs the "
                    "notebooks extra.")
    report.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                        help="where the notebooks are (default: ./notebooks)")
    report.add_argument("--jobs", type=int,
                        help="notebooks executed at once (default: one per core)")
    report.add_argument("--out", type=Path, default=Path("out/report"),
                        help="where NAME.html and the executed NAME.ipynb go "
                             "(default: out/report)")

    serve = commands.add_parser(
        "serve", help="run the HTTP service (and, by default, its worker) with uvicorn",
        description="Serve the API on the asyncio driver. Secrets come from the environment: "
                    "COUPONSIM_ADMIN_TOKEN (admin routes), COUPONSIM_JWT_KEY (--identity jwt). "
                    "Needs the service extra.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--identity", choices=["header", "jwt"], default="header",
                       help="trust a validated X-User-ID (behind a gateway) or verify a JWT")
    serve.add_argument("--stream", choices=["hardened", "design"], default="hardened",
                       help="status stream: one subscriber per process, or the design's")
    serve.add_argument("--no-coalesce", action="store_true",
                       help="one Redis round trip per call, not one pipeline per loop turn "
                            "(to measure what coalescing brings)")
    serve.add_argument("--no-sold-out-flag", action="store_true",
                       help="ask Redis even for a coupon this instance saw sold out "
                            "(to measure what the flag brings)")
    serve.add_argument("--plain-asyncio", action="store_true",
                       help="asyncio's loop and the h11 parser, not uvloop and httptools "
                            "(to measure what they bring)")
    serve.add_argument("--workers", type=int, default=1,
                       help="service processes on the one port, each with its own status hub "
                            "(the worker still runs once)")
    serve.add_argument("--no-worker", action="store_true",
                       help="run no consumers, schedulers or admission here "
                            "(`couponsim worker` does)")
    serve.add_argument("--scenario",
                       help="warm up this scenario's event at start (a bundled name or a "
                            ".toml path)")
    serve.add_argument("--quiet", action="store_true",
                       help="print neither the addresses nor one access-log line per request")
    serve.add_argument("--start-in", default="10s",
                       help="with --scenario: the event starts this long after start-up")
    serve.add_argument("--rate-limit", type=int, default=0, metavar="PER_S",
                       help="issue calls a second each service process lets through; those "
                            "over it go to the waiting room (default 0: no limit)")
    serve.add_argument("--time-limit-ms", type=float, default=1000.0,
                       help="an issue call slower than this is a failure for the breaker, "
                            "and its user goes to the waiting room (default 1000; the "
                            "worker's admission keeps its own, 1000)")
    calibrate = commands.add_parser(
        "calibrate", help="measure a Redis and a database; write the latency profile",
        description="Run the real flows on a scratch coupon (purged afterwards), time them "
                    "at the client and on the server, fit the database's batch and row "
                    "costs, and write a profile that a scenario names with "
                    "latency.profile = \"FILE\".")
    calibrate.add_argument("--redis-url", required=True, help="fake://NAME, redis://...")
    calibrate.add_argument("--db-url", required=True,
                           help="sqlite:///FILE or postgresql+psycopg://...")
    calibrate.add_argument("--out", type=Path, default=Path("latency_profile.toml"),
                           help="the profile to write (default: ./latency_profile.toml)")
    worker = commands.add_parser(
        "worker", help="run consumers, schedulers and waiting-room admission for a service")
    worker.add_argument("--consumer-batch", type=int,
                        help="queue entries per consumer batch (default: the live consumer's)")
    worker.add_argument("--admission-batch", type=int,
                        help="users the waiting room admits a tick (default 100)")
    worker.add_argument("--tick-ms", type=float,
                        help="how often the schedulers look and the room admits a batch; new "
                             "events are looked for every 10 ticks (default 100)")
    for command in (serve, worker):   # never run's defaults: a service shares no state
        command.add_argument("--redis-url", default=SERVICE_REDIS_URL,   # with simulations
                             help=f"default {SERVICE_REDIS_URL} (in this process only)")
        command.add_argument("--db-url", default=SERVICE_DATABASE_URL,
                             help=f"default {SERVICE_DATABASE_URL}")
    return parser


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help="fake://NAME (embedded, default), local://NAME (a private "
                             "redis-server from PATH, for this run), redis://, rediss:// or "
                             "unix://")
    parser.add_argument("--db-url", default=DEFAULT_DATABASE_URL,
                        help="sqlite:///FILE (default) or postgresql+psycopg://...")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _report_lines(report: InvariantReport) -> list[str]:
    lines = [f"\n{report.variant} coupon {report.coupon_id}: stock {report.initial_stock:,}, "
             f"left {report.stock_left:,}, issued {report.issued:,}, stored "
             f"{format(report.persisted, ',') if report.persisted is not None else '-'}, in flight "
             f"{report.in_flight:,}, compensated {report.compensated:,}",
             "invariants, judged on what Redis and the database hold"]
    lines += [f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.observed:,}"
              for check in report.checks]
    lines.append("\nall invariants hold" if report.ok else "\nINVARIANTS BROKEN")
    return lines


def _spike_lines(result: SpikeResult) -> list[str]:
    config, consumed = result.config, result.consumed
    readings = "" if config.seed_options == SEED_DEFAULTS else \
        f" (unique key {config.seed_options.unique_key})"
    lines = [f"spike: {config.users:,} users, {config.stock:,} coupons, variant "
             f"{config.variant}{readings}, seed {config.seed}: {result.requests:,} requests in "
             f"{result.wall_s:.2f} s", "\nusers were told"]
    lines += [f"  {outcome.value:<12}{result.told[outcome]:>10,}" for outcome in IssueOutcome]
    lines.append(f"\nconsumers: {consumed.batches:,} batches, {consumed.persisted:,} stored, "
                 f"{consumed.compensated:,} compensated, {consumed.dropped:,} dropped"
                 + (f" (first batch crashed {config.consumer_crash})"
                    if config.consumer_crash else ""))
    return lines + _report_lines(result.report)


def _report_json(report: InvariantReport) -> dict[str, Any]:
    return {
        "coupon": report.coupon_id, "variant": report.variant,
        "stock": report.initial_stock, "stock_left": report.stock_left,
        "issued": report.issued, "persisted": report.persisted,
        "in_flight": report.in_flight, "compensated": report.compensated,
        "lost": list(report.lost), "stuck": list(report.stuck),
        "unexpected": list(report.unexpected), "duplicates": report.duplicates,
        "checks": [asdict(check) for check in report.checks], "ok": report.ok,
    }


def _spike_json(result: SpikeResult) -> dict[str, Any]:
    consumed = result.consumed
    return {
        "config": asdict(result.config), "requests": result.requests,
        "told": {outcome.value: result.told[outcome] for outcome in IssueOutcome},
        "consumed": {"batches": consumed.batches, "persisted": consumed.persisted,
                     "compensated": consumed.compensated, "dropped": consumed.dropped},
        "report": _report_json(result.report), "ok": result.report.ok,
        "wall_s": round(result.wall_s, 3),
    }


def _run(args: argparse.Namespace) -> InvariantReport:
    repository = Repository.from_url(args.db_url)
    driver = SyncDriver.from_url(args.redis_url, repository)
    if args.command == "verify":
        try:
            report = driver.run(check_invariants(args.coupon, with_database=True))
        except UnknownCoupon as exc:
            if not args.redis_url.startswith("fake://"):
                raise
            raise InvalidInput(f"{exc} in {args.redis_url}, an embedded fakeredis: it lives "
                               "inside one process and went with the run; run and verify "
                               "against a real Redis (--redis-url redis://...)") from None
        print(json.dumps(_report_json(report), indent=2) if args.json
              else "\n".join(_report_lines(report)).lstrip())
        return report
    if args.scenario != SPIKE:
        return _simulate(args, driver)
    if args.set or args.out:
        raise InvalidInput("--set and --out belong to the simulation scenarios, not the spike")
    if args.unique_key is not None and args.variant != Variant.SEED.value:
        raise InvalidInput("--unique-key is a reading of the seed's document: use it with "
                           "--variant seed")
    given = {"users": args.users, "stock": args.stock, "double_click": args.double_click,
             "concurrency": args.concurrency, "seed": args.seed, "coupon_id": args.coupon,
             "batch_size": args.batch_size, "consumer_crash": args.crash_at,
             "variant": args.variant,
             "seed_options": None if args.unique_key is None
             else SeedOptions(unique_key=args.unique_key)}
    config = SpikeConfig(**{name: value for name, value in given.items() if value is not None})
    result = run_spike(config, driver)
    print(json.dumps(_spike_json(result), indent=2) if args.json
          else "\n".join(_spike_lines(result)))
    return result.report


def _simulate(args: argparse.Namespace, driver: SyncDriver) -> InvariantReport:
    spike_only = [f"--{name.replace('_', '-')}" for name in
                  ("stock", "double_click", "concurrency", "coupon", "batch_size", "crash_at",
                   "unique_key")
                  if getattr(args, name) is not None]
    if spike_only:
        raise InvalidInput(f"{', '.join(spike_only)} belong to the spike job; for a scenario "
                           "use --set SECTION.FIELD=VALUE")
    overrides = list(args.set)
    if args.variant:
        overrides.append(f'variant="{args.variant}"')
    if args.users is not None:
        overrides.append(f"traffic.users={args.users}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    scenario = load_scenario(args.scenario, overrides)
    if args.out:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"--out {args.out}: {exc}") from None
    with tqdm(total=scenario.traffic.users, unit="user", desc=scenario.name,
              disable=args.json or None, file=sys.stderr) as bar:
        outcome = simulate(scenario, driver, bar.update)
    written = save(outcome, args.out) if args.out else []
    if args.json:
        print(json.dumps(outcome.summary, indent=2, default=str))
    else:
        print("\n".join(_summary_lines(outcome.summary) + _report_lines(outcome.report)))
        for path in written:
            print(f"wrote {path}")
    return outcome.report


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"{summary['scenario']} ({summary['variant']}): {summary['users']:,} users, "
             f"{summary['requests']:,} requests, simulated in {summary['wall_s']} s",
             "", "users, by their final state"]
    lines += [f"  {state:<12}{count:>10,}  {names.outcome(state)}"
              for state, count in summary["users_by_final_state"].items()]
    lines += [""] + [f"{names.metric(key).label}: {summary[key]} {names.metric(key).unit}"
                     for key in ("sell_out_s", "last_arrival_s", "last_stored_s",
                                 "all_final_s")]
    lines += [f"  ({names.metric('all_final_s').meaning})",
              f"Redis commands per request: {summary['redis_commands_per_request']}",
              f"{names.metric('answer_ms')}, by path:"]
    lines += [f"  {names.path(path)}: p50 {q['p50']}, p95 {q['p95']}, p99 {q['p99']}"
              for path, q in summary["answer_latency_ms_by_path"].items()]
    lines += [f"{names.metric('stored_s').label} (ms): " + ", ".join(
                  f"{k} {v}" for k, v in (summary["coupon_stored_latency_ms"] or {}).items()),
              "fairness: " + ", ".join(f"{k} {v}" for k, v in summary["fairness"].items()),
              "requests by why they were sent: " + ", ".join(
                  f"{kind} {n:,}" for kind, n in summary["requests_by_kind"].items())]
    if summary["bot_coupons"]:
        lines.append(f"coupons won by bots: {summary['bot_coupons']}")
    if summary["checkouts"]:
        lines.append("checkout: " + ", ".join(
            f"{what} {n:,}" for what, n in summary["checkouts"].items()))
    if failover := summary.get("failover"):
        lines.append(f"failover at {failover['at_s']} s, replica {failover['replication_lag_ms']}"
                     f" ms behind: of {failover['acknowledged_before']:,} told ISSUED before, "
                     f"{failover['forgotten']:,} forgotten by the promoted store")
    if summary["acknowledged_lost"]:
        lines.append(f"told ISSUED but no coupon and no compensation: "
                     f"{summary['acknowledged_lost']:,}")
    return lines


def _sweep(args: argparse.Namespace) -> bool:
    """Run the sweep, write its files, print its summary; True when every invariant held."""
    # Imported here: sweeps pull in pyarrow and matplotlib's figure, half a second
    # that every other command (the main job included) would pay at start.
    from couponsim.sweep.executors import open_executor
    from couponsim.sweep.job import run_sweep
    from couponsim.sweep.job import save as save_sweep
    from couponsim.sweep.search import answer_line
    from couponsim.sweep.spec import load_sweep

    spec = load_sweep(args.file, replications=args.replications)
    if args.until_decisive is not None and args.until_decisive <= spec.replications:
        raise InvalidInput(f"--until-decisive {args.until_decisive}: give more than the "
                           f"{spec.replications} replications each point already has")
    if args.until_decisive is not None and spec.target is None:
        raise InvalidInput(f"--until-decisive needs a target; sweep {spec.name} has none")
    out = args.out or Path("out/sweeps") / spec.name
    with open_executor(args.workers, args.scheduler) as executor:
        result = run_sweep(spec, executor, out, until_decisive=args.until_decisive)
    written = save_sweep(result, out)
    if result.summary is not None:
        table = result.summary.assign(metric=[str(names.metric(m))
                                              for m in result.summary.metric])
        print(table.to_string(index=False))
    if result.search is not None:
        print("\n" + answer_line(result.search))
    print("\nall invariants held in every run" if result.invariants_ok
          else "\nINVARIANTS BROKEN in some runs: see the broken column of the runs table")
    print(f"wrote {len(written)} files to {out}")
    return result.invariants_ok


def _report(args: argparse.Namespace) -> bool:
    """Build the report, name each page; True when every notebook ran to its end."""
    pages = build_report(args.notebooks, args.out, jobs=args.jobs)
    for page in pages:
        print(f"{'ok    ' if page.ok else 'FAILED'}  {page.html}"
              + (f"  ({page.error})" if page.error else ""))
    return all(page.ok for page in pages)


def _explore(args: argparse.Namespace) -> bool:
    """Search (or walk) the scenario's schedules; print the verdict; True when clean."""
    scenario, variant = SCENARIO_RACES[args.scenario], Variant(args.variant)
    store = Store(args.redis_url)
    if args.examples < 1 or args.limit < 1:
        raise InvalidInput("--examples and --limit must be at least 1")
    print(f"{scenario.name} ({variant}): {scenario.description}")
    if args.exhaustive:
        found = exhaustive(scenario, variant, args.limit, store)
        scope = ("every schedule" if found.complete
                 else f"the walk stopped there; at most {args.limit:,}")
    else:
        found = search(scenario, variant, args.examples, store)
        scope = ("hypothesis ran out of new schedules" if found.explored < args.examples
                 else "hypothesis's schedules")
    if found.counterexample is None:
        print(f"no invariant broken in {found.explored:,} schedules ({scope})")
        return True
    print(f"INVARIANT BROKEN at schedule {found.explored:,} ({scope}): "
          + ", ".join(found.counterexample.broken))
    if found.shrinking:
        print(f"shrunk in {found.shrinking:,} more runs")
    print("\nthe " + ("first" if args.exhaustive else "smallest") + " schedule that breaks it:")
    print(format_timeline(found.counterexample.steps))
    return False


def _service(args: argparse.Namespace) -> None:
    """``serve`` and ``worker``: argument wiring only; the service extra is imported
    here, so that the base install runs every other command without it."""
    try:
        from couponsim.service import serve
        from couponsim.service.config import SECRET_ENV, ServiceConfig
    except ImportError as exc:
        raise MissingExtra("service", f"couponsim {args.command} needs {exc.name}") from None
    if args.command == "worker":
        if not os.environ.get(SECRET_ENV):
            print(f"couponsim worker: {SECRET_ENV} is not set; coupon codes are keyed with "
                  "a secret of this process only. Give every process of a deployment the "
                  "same one.", file=sys.stderr)
        from couponsim.consumers import LIVE
        from couponsim.service.worker import WorkerConfig

        batch = {} if args.consumer_batch is None else {"batch_size": args.consumer_batch}
        pace = {name: value for name, value in (
            ("tick_s", None if args.tick_ms is None else args.tick_ms / 1000),
            ("admission_batch", args.admission_batch)) if value is not None}
        serve.work(ServiceConfig.from_env(redis_url=args.redis_url, db_url=args.db_url),
                   WorkerConfig(consumer=dataclasses.replace(LIVE, **batch), **pace))
        return
    events = []
    if args.scenario:
        spec = load_scenario(args.scenario).event
        events.append(CouponEvent(spec.coupon_id, spec.stock, discount_value=spec.discount_value,
                                  starts_at_ms=wall_clock_ms()
                                  + serve.parse_duration_ms(args.start_in)))
    config = ServiceConfig.from_env(redis_url=args.redis_url, db_url=args.db_url,
                                    identity=args.identity, stream=args.stream,
                                    coalesce=not args.no_coalesce,
                                    sold_out_flag=not args.no_sold_out_flag,
                                    rate_limit_per_s=args.rate_limit,
                                    time_limit_ms=args.time_limit_ms)
    serve.serve(config, args.host, args.port, with_worker=not args.no_worker, events=events,
                plain_asyncio=args.plain_asyncio, workers=args.workers, quiet=args.quiet)


def _calibrate(args: argparse.Namespace) -> None:
    calibration = calibrate(args.redis_url, args.db_url)
    save_profile(calibration, args.out)
    print(f"latency profile written to {args.out} in {calibration.wall_s:.1f} s")
    for name, value in calibration.latency.items():
        print(f"  {name:<20}{value:>12.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "explore":
            return 0 if _explore(args) else EXIT_BROKEN
        if args.command == "sweep":
            return 0 if _sweep(args) else EXIT_BROKEN
        if args.command == "report":
            return 0 if _report(args) else EXIT_BROKEN
        if args.command == "calibrate":
            _calibrate(args)
            return 0
        if args.command in ("serve", "worker"):
            _service(args)
            return 0
        report = _run(args)
    except CouponsimError as exc:
        print(f"couponsim: error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception:
        traceback.print_exc()
        print("couponsim: internal error (a bug): please report the traceback above",
              file=sys.stderr)
        return EXIT_BUG
    return 0 if report.ok else EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
