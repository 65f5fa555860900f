"""Calibration: measure the Redis and database that URLs name, and write the latency
profile the simulation charges for them (``couponsim calibrate``).

The scenario files' ``[latency]`` costs were set by hand; a model whose costs are
guessed predicts a guess. This job runs the real flows (warm-up, issue, status
reads, the hardened consumer with the real Repository persist path) on a scratch
coupon, times them at the client and, where the server keeps them, reads the
server's own figures (``INFO commandstats`` deltas: no ``CONFIG RESETSTAT``, so a
shared server's statistics are left alone), and times what a consume cycle spends
between its calls (the worker's own time, which the calls' costs leave out). Everything
it wrote, in Redis and in
the database, is purged before it returns, whether it succeeded or not.

A mean is what the model charges today; the percentiles are kept beside it because
a tail that a mean hides is what a capacity planner needs to see.
"""

import platform
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fakeredis
import numpy as np
import redis
from redis.cluster import RedisCluster
from tqdm import tqdm

from couponsim.codes import SIMULATION_CODES
from couponsim.connection import CLUSTER_SCHEME, connect, redact
from couponsim.drivers import finish
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.effects import Command, DbCall, Effect, Pipeline, Script
from couponsim.errors import CouponsimError, InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows import Flow, Variant, lifecycle
from couponsim.flows.consume import ConsumerConfig, consume_batch, load_event
from couponsim.flows.issue import IssueRequest, issue
from couponsim.flows.status import read_status
from couponsim.flows.waiting_room import admit, join_room
from couponsim.keys import CouponKeys
from couponsim.latency_profile import write_profile
from couponsim.persistence.database import make_engine
from couponsim.persistence.repository import Repository
from couponsim.records import IssuedCoupon
from couponsim.scripts import script_names, script_source
from couponsim.sim.scenario import LatencySpec, load_scenario, scenario_names

PERCENTILES = (50, 90, 99)
ROOM_BATCH = 100
"""Users per admission round: the bundled scenarios' gateway.admission_batch."""
CHARGED = tuple(item.name for item in fields(LatencySpec) if item.name != "profile")
"""The ``[latency]`` fields the model charges: a profile gives every one."""


@dataclass(frozen=True)
class CalibrationPlan:
    """How much to measure: enough samples for a p99, small enough for well under a
    minute on a laptop's Redis and PostgreSQL (and on fakeredis + SQLite)."""

    pings: int = 1000
    users: int = 1600
    """Issue requests on the scratch coupon; its stock is half of them, so the
    script's SOLD_OUT path is timed as well as the ISSUED one."""
    double_click_every: int = 10
    """Every this many users also send a second request (a DUPLICATE answer)."""
    status_reads: int = 1000
    room_users: int = 500
    """Users who join the waiting room and are admitted in batches of ``ROOM_BATCH``."""
    batch_sizes: tuple[int, ...] = ()
    """Database batch sizes to fit the batch and row costs over; empty: 1, 10, 25,
    50, 200 and every consumers.batch_size of the bundled scenarios."""
    batch_repeats: int = 20
    pubsub_messages: int = 500

    def __post_init__(self) -> None:
        counts = (self.pings, self.users, self.double_click_every, self.status_reads,
                  self.room_users,
                  self.batch_repeats, self.pubsub_messages)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
            raise InvalidInput("every count of a calibration plan must be a whole number >= 1")
        if any(n < 1 for n in self.batch_sizes) or len(set(self.batch_sizes)) == 1:
            raise InvalidInput("batch sizes must be >= 1, and at least two different ones")

    def issue_requests(self) -> int:
        """The issue phase's requests: every user's, and every double click."""
        return self.users + len(range(0, self.users, self.double_click_every))

    def sizes(self) -> tuple[int, ...]:
        if self.batch_sizes:
            return tuple(sorted(set(self.batch_sizes)))
        return tuple(sorted({1, 10, 25, 50, 200} | _scenario_batch_sizes()))


def _scenario_batch_sizes() -> set[int]:
    """The consumer batch sizes the bundled scenarios run."""
    return {load_scenario(name).consumers.batch_size for name in scenario_names()}


@dataclass(frozen=True)
class Summary:
    """One measured quantity, in milliseconds."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: list[float]) -> "Summary":
        p50, p90, p99 = np.percentile(values_ms, PERCENTILES)
        return cls(len(values_ms), float(np.mean(values_ms)), float(p50), float(p90),
                   float(p99), float(max(values_ms)))

    def table(self) -> dict[str, Any]:
        return {"n": self.n, **{name: round(getattr(self, name), 5)
                                for name in ("mean", "p50", "p90", "p99", "max")}}


@dataclass(frozen=True)
class Calibration:
    latency: dict[str, float]
    """Every field of the model's ``[latency]`` section."""
    tables: dict[str, dict[str, Any]]
    """The profile's other sections: where and when, distributions, server figures."""
    wall_s: float


class _Timed:
    """Runs flows on a driver and keeps each effect's time at the client, by label."""

    def __init__(self, driver: SyncDriver) -> None:
        self.driver = driver
        self.samples: defaultdict[str, list[float]] = defaultdict(list)
        self.total_ms = 0.0
        """Every effect's time so far, together."""

    def execute(self, effect: Effect) -> Any:
        started = time.perf_counter_ns()
        result = self.driver.execute(effect)
        spent_ms = (time.perf_counter_ns() - started) / 1e6
        self.samples[_label(effect)].append(spent_ms)
        self.total_ms += spent_ms
        return result

    def run(self, flow: Flow[Any]) -> Any:
        return finish(flow, self.execute)


def _label(effect: Effect) -> str:
    match effect:
        case Script(name):
            return f"script_{name}"
        case Command(name):
            return f"command_{name.lower()}"
        case Pipeline(commands):
            return f"pipeline_{len(commands)}"
        case DbCall(method):
            return f"db_{method}"
    return type(effect).__name__.lower()


class _ServerStats:
    """``INFO commandstats`` deltas around a phase, when the server keeps them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.available = self._read() is not None

    def _read(self) -> dict[str, tuple[int, int]] | None:
        if isinstance(self.client, fakeredis.FakeRedis):
            return None
        try:
            stats = self.client.info("commandstats")
        except redis.ResponseError:
            return None
        return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
                for name, v in stats.items() if isinstance(v, dict) and "calls" in v} or None

    @contextmanager
    def delta(self, into: dict[str, tuple[int, int]]) -> Iterator[None]:
        """Calls and microseconds each command took on the server during the block."""
        before = self._read() if self.available else None
        yield
        after = self._read() if before is not None else None
        if before is None or after is None:
            return
        for name, (calls, usec) in after.items():
            was_calls, was_usec = before.get(name, (0, 0))
            if calls > was_calls and name not in ("info", "ping"):
                into[name] = (calls - was_calls, usec - was_usec)


def calibrate(redis_url: str, db_url: str, plan: CalibrationPlan = CalibrationPlan(),
              progress: bool = True) -> Calibration:
    """Measure the stack; bad URLs and services that do not answer raise their typed
    errors before anything is written."""
    started = time.perf_counter()
    if urlsplit(redis_url).scheme == CLUSTER_SCHEME:
        raise InvalidInput("calibrate measures one Redis server; give it one node's URL, "
                           "not redis+cluster://")
    make_engine(db_url).dispose()   # a malformed database URL before any connection
    client = connect(redis_url)
    assert not isinstance(client, RedisCluster)
    try:
        repository = Repository.from_url(db_url)
    except CouponsimError:
        client.close()
        raise
    try:
        return _measure(client, redis_url, db_url, repository, plan, progress, started)
    finally:
        repository.engine.dispose()
        client.close()


def _measure(client: redis.Redis, redis_url: str, db_url: str, repository: Repository,
             plan: CalibrationPlan, progress: bool, started: float) -> Calibration:
    repository.ping()
    versions = {"redis_server": _redis_version(client),
                "database_server": ".".join(map(str, repository.engine.dialect
                                                .server_version_info or ()))}
    sizes = plan.sizes()
    coupon = f"calibrate-{secrets.token_hex(4)}"
    fit_coupon = f"{coupon}-db"
    worker_coupon = f"{coupon}-worker"
    driver = SyncDriver(client, redis_url, repository)
    timed = _Timed(driver)
    stats = _ServerStats(client)
    steps = (plan.pings + plan.issue_requests() + 1
             + plan.status_reads + plan.room_users + len(sizes) * plan.batch_repeats
             + plan.pubsub_messages + 3 * plan.batch_repeats)
    bar = tqdm(total=steps, desc="calibrate", unit="step", disable=not progress)
    try:
        ping_ms = _pings(client, plan.pings, bar)
        server: dict[str, dict[str, tuple[int, int]]] = {
            phase: {} for phase in ("issue", "status", "room_join", "room_admit", "consume")}
        _sale(timed, stats, server, coupon, plan, max(_scenario_batch_sizes()), bar)
        fit_ms = _database(repository, fit_coupon, sizes, plan.batch_repeats, bar)
        cycle_ms = _consumer_cycles(driver, worker_coupon, plan.batch_repeats, bar)
        pubsub_ms = _pubsub(client, CouponKeys(coupon).channel, plan.pubsub_messages, bar)
    finally:
        bar.close()
        for scratch in (coupon, f"{coupon}-room", fit_coupon, worker_coupon):
            driver.run(lifecycle.purge(scratch, with_database=True))
    return _profile(redis_url, db_url, repository, versions, stats.available, ping_ms,
                    timed.samples, server, fit_ms, cycle_ms, pubsub_ms, plan,
                    time.perf_counter() - started)


def _redis_version(client: redis.Redis) -> str:
    if isinstance(client, fakeredis.FakeRedis):
        return f"fakeredis {metadata.version('fakeredis')}"
    return f"redis {client.info('server')['redis_version']}"


def _pings(client: redis.Redis, count: int, bar: tqdm) -> list[float]:
    """The round trip with next to no work on the server: the network, both ways."""
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        client.ping()
        samples.append((time.perf_counter_ns() - started) / 1e6)
        bar.update()
    return samples


def _sale(timed: _Timed, stats: _ServerStats, server: dict[str, dict[str, tuple[int, int]]],
          coupon: str, plan: CalibrationPlan, batch_size: int, bar: tqdm) -> None:
    """A small sale on the scratch coupon, phase by phase so that the server's figures
    of each phase belong to its own script: issue, status reads, the consumer."""
    for name in script_names():   # loaded, so that no phase counts a NOSCRIPT round trip
        timed.driver.client.script_load(script_source(name))
    now = wall_clock_ms()
    event = CouponEvent(coupon, stock=plan.users // 2, name="calibrate", starts_at_ms=now - 1)
    timed.run(lifecycle.open_event(event, Variant.HARDENED))
    bar.update()
    requests = []
    for n in range(plan.users):
        requests.append(IssueRequest(coupon, f"u{n}", f"r{n}"))
        if n % plan.double_click_every == 0:
            requests.append(IssueRequest(coupon, f"u{n}", f"r{n}-again"))
    with stats.delta(server["issue"]):
        for request in requests:
            timed.run(issue(request, wall_clock_ms()))
            bar.update()
    with stats.delta(server["status"]):
        for n in range(plan.status_reads):
            timed.run(read_status(coupon, requests[n % len(requests)].request_id))
            bar.update()
    _room(timed, stats, server, f"{coupon}-room", plan, bar)
    stored = timed.run(load_event(coupon))
    config = ConsumerConfig(batch_size=batch_size)
    with stats.delta(server["consume"]):
        while timed.run(consume_batch(stored, "calibrate", wall_clock_ms(), config)).read:
            pass


def _room(timed: _Timed, stats: _ServerStats, server: dict[str, dict[str, tuple[int, int]]],
          coupon: str, plan: CalibrationPlan, bar: tqdm) -> None:
    """The gateway's waiting room on a coupon of its own: users join, then admission
    rounds take them in batches (room_admit, their issue scripts, room_settle)."""
    event = CouponEvent(coupon, stock=plan.room_users, name="calibrate",
                        starts_at_ms=wall_clock_ms() - 1)
    timed.run(lifecycle.open_event(event, Variant.HARDENED))
    with stats.delta(server["room_join"]):
        for n in range(plan.room_users):
            timed.run(join_room(coupon, f"w{n}", f"w{n}", wall_clock_ms()))
            bar.update()
    with stats.delta(server["room_admit"]):
        while timed.run(admit(coupon, ROOM_BATCH, wall_clock_ms())).outcomes:
            pass


DATABASE_ROUNDS = 4
"""At most this many rounds of ``batch_repeats`` per size: a loaded machine's scheduling
noise can hide a row cost of a few microseconds (SQLite's) in a few rounds, and each
further round narrows the medians the fit is drawn through."""


def _database(repository: Repository, coupon: str, sizes: tuple[int, ...], repeats: int,
              bar: tqdm) -> dict[int, list[float]]:
    """Time the real persist path (``persist_issued``, one transaction per batch) at
    each size, sizes interleaved so that a drift of the machine spreads over all; one
    more round while the fit is not yet usable (see ``DATABASE_ROUNDS``)."""
    per_round = sum(sizes) * repeats
    repository.save_coupon(CouponEvent(coupon, stock=per_round * DATABASE_ROUNDS,
                                       name="calibrate"))
    times: dict[int, list[float]] = {size: [] for size in sizes}
    now = wall_clock_ms()
    made = 0
    for round_ in range(DATABASE_ROUNDS):
        if round_:
            if _usable(*fit_batch_cost(times)[:2]):
                break
            bar.total += len(sizes) * repeats
        for _ in range(repeats):
            for size in sizes:
                batch = []
                for _ in range(size):
                    request = f"d{made}"
                    batch.append(IssuedCoupon(SIMULATION_CODES.code(coupon, request), request,
                                              f"u{made}", coupon, 1, now, now + 3_600_000))
                    made += 1
                started = time.perf_counter_ns()
                repository.persist_issued(batch)
                times[size].append((time.perf_counter_ns() - started) / 1e6)
                bar.update()
    return times


CYCLE_SIZES = (1, 50)
"""Consumer batch sizes whose cycles are timed, to fit the worker's own time per batch
and per entry (as the database fit does for the transaction)."""


def _consumer_cycles(driver: SyncDriver, coupon: str, repeats: int,
                     bar: tqdm) -> dict[int, list[float]]:
    """The worker's own time in each consume cycle, by batch size: the cycle's wall time
    less the time its calls took at the client (Redis's and the database's, which the
    model charges as such). Sizes take turns, so that a drift of the machine spreads
    over both."""
    cycles = {size: 2 * repeats if size == 1 else repeats for size in CYCLE_SIZES}
    stock = sum(size * count for size, count in cycles.items())
    driver.run(lifecycle.open_event(CouponEvent(coupon, stock=stock, name="calibrate",
                                                starts_at_ms=wall_clock_ms() - 1),
                                    Variant.HARDENED))
    for n in range(stock):
        driver.run(issue(IssueRequest(coupon, f"c{n}", f"c{n}"), wall_clock_ms()))
    event = driver.run(load_event(coupon))
    own_ms: dict[int, list[float]] = {size: [] for size in CYCLE_SIZES}
    timed = _Timed(driver)     # its own: these calls stay out of the profile's client_ms
    while any(len(own_ms[size]) < count for size, count in cycles.items()):
        for size, count in cycles.items():
            if len(own_ms[size]) >= count:
                continue
            calls_ms = timed.total_ms
            started = time.perf_counter_ns()
            report = timed.run(consume_batch(event, "calibrate", wall_clock_ms(),
                                             ConsumerConfig(batch_size=size)))
            if not report.read:
                raise InvalidInput(f"calibrate: {coupon}'s queue ran dry before the "
                                   f"consumer's cycles were timed")
            if report.read == size:
                own_ms[size].append((time.perf_counter_ns() - started) / 1e6
                                    - (timed.total_ms - calls_ms))
            bar.update()
    return own_ms


def _usable(batch_ms: float, row_ms: float) -> bool:
    """Both costs positive: a fit that is not is noise, and the model cannot charge it."""
    return batch_ms > 0 and row_ms > 0


def _pubsub(client: redis.Redis, channel: str, count: int, bar: tqdm) -> list[float]:
    """From the PUBLISH call to the message in a subscriber's hands."""
    subscriber = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    subscriber.subscribe(channel)
    try:
        while subscriber.get_message(timeout=1.0) is not None:   # the subscribe reply
            pass
        samples = []
        for n in range(count):
            started = time.perf_counter_ns()
            client.publish(channel, str(n))
            message = None
            while message is None:
                message = subscriber.get_message(timeout=2.0)
                if message is None and time.perf_counter_ns() - started > 5e9:
                    raise InvalidInput(f"pub/sub: message {n} on {channel} never arrived")
            samples.append((time.perf_counter_ns() - started) / 1e6)
            bar.update()
        return samples
    finally:
        subscriber.unsubscribe(channel)
        subscriber.close()


def fit_batch_cost(times: dict[int, list[float]]) -> tuple[float, float, float]:
    """Batch cost and row cost (ms) by least squares over each size's median (a hiccup
    of the machine moves a median less than a mean), and the fit's R²."""
    sizes = np.array(sorted(times), dtype=float)
    medians = np.array([np.median(times[int(size)]) for size in sizes])
    row_ms, batch_ms = np.polyfit(sizes, medians, 1)
    predicted = batch_ms + row_ms * sizes
    spread = float(np.sum((medians - medians.mean()) ** 2))
    r2 = 1.0 - float(np.sum((medians - predicted) ** 2)) / spread if spread else 1.0
    return float(batch_ms), float(row_ms), r2


def _server_mean_ms(calls_usec: dict[str, tuple[int, int]],
                    keep: Callable[[str], bool]) -> tuple[float, int] | None:
    calls = sum(c for name, (c, _u) in calls_usec.items() if keep(name))
    usec = sum(u for name, (_c, u) in calls_usec.items() if keep(name))
    return (usec / calls / 1000, calls) if calls else None


def _is_script(name: str) -> bool:
    return name.startswith(("evalsha", "eval", "fcall"))


def _profile(redis_url: str, db_url: str, repository: Repository, versions: dict[str, str],
             server_stats: bool,
             ping_ms: list[float], samples: dict[str, list[float]],
             server: dict[str, dict[str, tuple[int, int]]], fit_ms: dict[int, list[float]],
             cycle_ms: dict[int, list[float]], pubsub_ms: list[float], plan: CalibrationPlan,
             wall_s: float) -> Calibration:
    ping = Summary.of(ping_ms)
    client_ms = {label: Summary.of(values) for label, values in sorted(samples.items())
                 if label.startswith(("script_", "command_", "pipeline_", "db_"))}
    commands = [v for label, values in samples.items() if label.startswith("command_")
                for v in values]
    batch_ms, row_ms, r2 = fit_batch_cost(fit_ms)
    if not _usable(batch_ms, row_ms):
        raise InvalidInput(f"the database fit is not usable after {DATABASE_ROUNDS} rounds "
                           f"(batch {batch_ms:.4f} ms, row {row_ms:.5f} ms, R² {r2:.3f}): "
                           f"run calibrate again on a quieter machine")
    tables: dict[str, dict[str, Any]] = {}
    script = _server_mean_ms(server["issue"], _is_script) if server_stats else None
    # Redis counts the commands a script calls as commands too: the status reads are
    # the one phase whose plain commands (HGETALL, a crowd's polls) all came from us.
    command = _server_mean_ms(server["status"], lambda name: not _is_script(name)) \
        if server_stats else None
    if script is not None and command is not None:
        source = ("INFO commandstats deltas (usec per call on the server): the issue "
                  "script's EVALSHA (the hot one; the waiting room's join is "
                  "server_ms.room_join_evalsha, the consumer's finalize, per batch, "
                  "server_ms.consume_evalsha, and the model charges one cost for every "
                  "script), and the status reads' HGETALL for plain commands (the other "
                  "phases' plain commands are mostly calls made inside scripts)")
        script_ms, command_ms = script[0], command[0]
        # Deltas count every client's calls: they are ours alone only if the counts agree.
        tables["server_quiet"] = {"issue_scripts": script[1] == plan.issue_requests(),
                                  "status_commands": command[1] == plan.status_reads}
        tables["server_ms"] = {
            f"{phase}_{name.replace('|', '_')}": {"calls": calls,
                                                  "mean": round(usec / calls / 1000, 5)}
            for phase, figures in server.items() for name, (calls, usec) in sorted(
                figures.items())}
    else:
        source = ("unavailable: this server keeps no INFO commandstats (fakeredis, in the "
                  "client's process): a call's whole time at the client is the service "
                  "time, and there is no network")
        script_ms = float(np.mean(samples["script_issue"]))
        command_ms = float(np.mean(commands))
    network_ms = ping.mean / 2 if server_stats else 0.0
    cycle_batch_ms, cycle_row_ms, cycle_r2 = fit_batch_cost(cycle_ms)
    latency = {"network_ms": network_ms, "redis_command_ms": command_ms,
               "redis_script_ms": script_ms, "database_batch_ms": batch_ms,
               "database_row_ms": row_ms,
               "consumer_batch_cpu_ms": max(0.0, cycle_batch_ms),
               "consumer_row_cpu_ms": max(0.0, cycle_row_ms)}
    assert set(latency) == set(CHARGED), "a latency field the model charges is not measured"
    tables = {
        "profile": {
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": platform.node(), "redis": redact(redis_url),
            "database": redact(db_url), "database_backend": repository.engine.dialect.name,
            **versions,
            "server_stats": "INFO commandstats deltas" if server_stats else source,
            "wall_s": round(wall_s, 2),
        },
        "sources": {
            "network_ms": ("half the mean PING round trip at the client (the model draws "
                           "each way from an exponential of this mean)" if server_stats
                           else "none in the client's process (ping_rtt_ms is the call's "
                                "cost through fakeredis)"),
            "redis_command_ms": source, "redis_script_ms": source,
            "database_batch_ms": "least-squares intercept over the medians of "
                                 "persist_issued's time per batch size (database_ms)",
            "database_row_ms": "least-squares slope of the same fit",
            "consumer_batch_cpu_ms": "least-squares intercept over the medians of a "
                                     "consume cycle's own time (its wall time less its "
                                     "calls' at the client) at batch sizes 1 and 50 "
                                     "(consumer_cycle_ms); never below 0",
            "consumer_row_cpu_ms": "least-squares slope of the same fit; never below 0",
            "pubsub_ms": "PUBLISH call to the subscriber's receipt; the model does not "
                         "charge it yet",
        },
        **tables,
        "database_fit": {"batch_ms": round(batch_ms, 5), "row_ms": round(row_ms, 6),
                         "r2": round(r2, 4), "sizes": sorted(fit_ms)},
        "consumer_cycle_ms": {f"batch_{size}": Summary.of(values).table()
                              for size, values in sorted(cycle_ms.items())}
                             | {"fit_r2": round(cycle_r2, 4)},
        "ping_rtt_ms": ping.table(),
        "pubsub_ms": Summary.of(pubsub_ms).table(),
        "client_ms": {label: summary.table() for label, summary in client_ms.items()},
        "database_ms": {f"rows_{size}": Summary.of(values).table()
                        for size, values in sorted(fit_ms.items())},
    }
    return Calibration({name: round(value, 6) for name, value in latency.items()}, tables,
                       wall_s)


def save_profile(calibration: Calibration, path: Path, comment: str = "") -> None:
    """Write the profile as TOML that ``latency.profile`` loads."""
    heading = comment or ("Latency profile measured by `couponsim calibrate` on "
                          f"{calibration.tables['profile']['host']} at "
                          f"{calibration.tables['profile']['measured_at']}.")
    write_profile(path, heading, calibration.latency, calibration.tables)
