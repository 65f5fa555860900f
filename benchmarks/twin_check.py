"""The twin check (issue #18, item 2): the same spike live and in the model, compared.

``couponsim calibrate`` measures the Redis and database given; then, at three load
levels (a consumer that keeps up, one that cannot, and a crowd that meets the
instance's rate limit and the waiting room), the scenario's plan (the same
users, arrival times, double clicks and stock) is replayed ``--runs`` times in wall
time against ``couponsim serve`` and ``couponsim worker`` on that stack, and once in
the model with the profile just measured. The table gives, per metric, the live
runs' median and range, the model's value, and the prediction error (model / live
median - 1); targets are reported, not asserted.

    python benchmarks/twin_check.py [--users 600] [--runs 3]
        [--redis-url local://twin] [--db-url postgresql+psycopg://postgres@127.0.0.1/DB]

Defaults: a private redis-server (local://) and a SQLite file in a scratch directory.
Exit code 1 when an invariant is broken in a live run or in the model.
"""

import argparse
import math
import os
import sys
import tempfile

import pandas as pd
from tqdm import tqdm

from couponsim.twin import ADMISSION_TICK_S, TwinResult, levels, twin_check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="local://twin")
    parser.add_argument("--db-url", help="default: a SQLite file in a scratch directory")
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3, help="live runs per level")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--csv", help="also write the table here")
    parser.add_argument("--no-instance", action="store_true",
                        help="the model without the service's instance (as before #18 item 3)")
    parser.add_argument("--own-cores", action="store_true",
                        help="the model's processes each with a core of their own, not sharing "
                             "this machine's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twin-check-") as scratch:
        db_url = args.db_url or f"sqlite:///{scratch}/twin.sqlite"
        print(f"load before: {_load()}; Redis {args.redis_url}; database {db_url}")
        with tqdm(total=1 + len(levels()) * (args.runs + 1), desc="twin check",
                  unit="step") as bar:
            def step(name: str) -> None:
                if bar.n or name != "calibrate":
                    bar.update(1)
                bar.set_postfix_str(name)

            result = twin_check(args.redis_url, db_url, users=args.users, runs=args.runs,
                                seed=args.seed, progress=step,
                                service_instance=not args.no_instance,
                                shared_host=not args.own_cores)
            bar.update(1)
    print(f"load after: {_load()}\n")
    _print(result)
    if args.csv:
        result.table().to_csv(args.csv, index=False)
    ok = all(run.report.ok for level in result.levels for run in (*level.live, level.model))
    return 0 if ok else 1


def _load() -> str:
    return "load average " + ", ".join(f"{n:.2f}" for n in os.getloadavg()) \
        + f" on {os.cpu_count()} cores"


def _print(result: TwinResult) -> None:
    print(f"calibrated in {result.calibrate_s:.1f} s: "
          + ", ".join(f"{name}={value:.4g}" for name, value in result.profile.items()))
    for level in result.levels:
        first = level.live[0]
        lag = pd.concat([run.press_lag_ms for run in level.live])
        doubles = sum(click.kind.value == "double click" for click in level.clicks)
        print(f"\n== {level.level.name}: {level.level.users} users, {doubles} double clicks, "
              f"{level.level.stock} coupons, arrivals exponential (mean "
              f"{level.level.spread_s:g} s), one consumer in batches of "
              f"{level.level.consumer_batch}; {len(level.live)} live runs")
        print("   model's service instance: " + (
            "not modelled" if level.instance is None else
            f"one, {level.instance.cpu_ms:.3f} ms of CPU a press, "
            f"{level.instance.room_poll_cpu_ms:.3f} ms an ask of the room's page, and a client "
            f"round trip of {level.instance.client_rtt_ms:.3f} ms (measured on the live "
            "service)"))
        print("   model's host: " + ("each process has a core of its own" if level.host is None
                                      else f"{level.host.cores} cores shared, "
                                      f"{level.host.background_cores:.2f} of them busy with the "
                                      "load generator and Redis (as the live runs measured)"))
        print(f"   load generator: presses late by p50 {lag.quantile(0.5):.1f} ms, "
              f"p99 {lag.quantile(0.99):.1f} ms, max {lag.max():.1f} ms")
        outside = pd.concat([run.requests.answered_ms - run.requests.pressed_ms
                             - run.requests.served_ms for run in level.live])
        print(f"   the client's part of an answer (the answer's time less the service's own, "
              f"Server-Timing): p50 {outside.quantile(0.5):.2f} ms, p99 "
              f"{outside.quantile(0.99):.2f} ms live; the model's round trip "
              f"{level.instance.client_rtt_ms if level.instance else 0:.2f} ms")
        cores = pd.DataFrame([run.cores for run in level.live]).median()
        print("   cores busy from the first press to the last coupon stored (live, median): "
              + ", ".join(f"{name} {value:.2f}" for name, value in cores.items())
              + f"; {cores.sum():.2f} of {os.cpu_count()}")
        if level.level.gateway:
            print(f"   gateway: the instance lets {level.level.rate_limit_per_s} presses a second "
                  f"through; the room admits {level.level.admission_batch} users every "
                  f"{ADMISSION_TICK_S * 1000:.0f} ms")
        held = all(run.report.ok for run in level.live)
        print(f"   invariants: live {'all hold' if held else 'BROKEN'}, model "
              f"{'hold' if level.model.report.ok else 'BROKEN'}; live answers "
              f"{first.requests.answer.value_counts().to_dict()}, model "
              f"{level.model.requests.answer.value_counts().to_dict()}")
        table = level.table()
        print("   " + _format(table).replace("\n", "\n   "))
        rates = table.set_index("key")
        for column, who in (("live_median", "live"), ("simulated", "model")):
            issue, served = rates.at["issue_rate_per_s", column], rates.at["throughput_per_s",
                                                                           column]
            peak = rates.at["peak_backlog", column]
            verdict = "SATURATED" if served < 0.8 * issue else "keeps up"
            print(f"   {who}: consumer {verdict}: stores {served:.0f}/s against coupons "
                  f"issued at {issue:.0f}/s; backlog peaked at {peak:.0f} of "
                  f"{level.level.stock}")


def _format(table: pd.DataFrame) -> str:
    def number(value: float) -> str:
        return "n/a" if not math.isfinite(value) else f"{value:,.3g}" if abs(value) < 10 \
            else f"{value:,.0f}"

    rows = [("metric", "live median", "live range", "simulated", "error")]
    for row in table.itertuples():
        rows.append((row.metric, number(row.live_median),
                     f"{number(row.live_min)} - {number(row.live_max)}",
                     number(row.simulated),
                     "n/a" if not math.isfinite(row.error_pct) else f"{row.error_pct:+.0f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


if __name__ == "__main__":
    sys.exit(main())
