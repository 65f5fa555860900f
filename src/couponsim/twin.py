"""The twin check: one spike run twice, live and in the model, and compared.

From one scenario's traffic plan (the same users, arrival times, double clicks and
stock), this module

1. calibrates the model on the Redis and database it is given (``calibrate``),
2. replays the plan in wall time against ``couponsim serve`` and ``couponsim worker``
   (subprocesses) on that stack, with an asyncio load generator that records each
   request's press, answer and final status; the database stamps each stored coupon
   with its own clock (a trigger, added for the check and removed after it),
3. simulates the same plan with the calibrated profile,

and computes the same metrics on both from the same kind of record: per request
(press, answer, final answer) and per stored coupon (when its stock was taken: the
row's ``issued_at_ms``; when it was stored: the database's stamp, or in the model
the end of its transaction).
"""

import asyncio
import json
import math
import os
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import psutil  # type: ignore[import-untyped]
from sqlalchemy import Engine, select, text

from couponsim.calibrate import CalibrationPlan, calibrate, save_profile
from couponsim.connection import connect, resolve
from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import lifecycle
from couponsim.flows.lifecycle import warm_up_fresh
from couponsim.keys import CouponKeys
from couponsim.persistence.models import UserCoupon
from couponsim.persistence.repository import Repository
from couponsim.processes import couponsim_process, free_port, wait_until_ready
from couponsim.resilience.breaker import BreakerConfig
from couponsim.service.config import SECRET_ENV
from couponsim.service.page import ROOM_POLL_MS
from couponsim.sim.records import START_MS
from couponsim.sim.run import simulate
from couponsim.sim.scenario import HostSpec, Scenario, load_scenario
from couponsim.sim.traffic import Click, plan
from couponsim.sim.world import random_streams
from couponsim.verify import InvariantReport, check_invariants
from couponsim.wire import Pool, first_event

SMALL_CALIBRATION = CalibrationPlan(pings=300, users=400, status_reads=300, room_users=100,
                                    batch_sizes=(1, 50, 200), batch_repeats=8,
                                    pubsub_messages=100)
"""A few seconds of calibration: the twin check's scenarios are small."""
FINAL = {"COMPLETED", "FAILED"}
ROOM_FINAL = {"ISSUED", "DUPLICATE", "SOLD_OUT", "NOT_ACTIVE", "FAILED", "LEFT"}
METRICS = {
    "sell_out_s": "sell-out time (s)",
    "answer_p50_ms": "answer latency p50 (ms)",
    "answer_p99_ms": "answer latency p99 (ms)",
    "stored_p50_ms": "press to stored p50 (ms)",
    "stored_p95_ms": "press to stored p95 (ms)",
    "stored_p99_ms": "press to stored p99 (ms)",
    "issue_rate_per_s": "issue rate (coupons/s)",
    "throughput_per_s": "consumer throughput (coupons/s)",
    "winners_told_s": "every winner told COMPLETED (s)",
    "all_final_s": "every user answered (s)",
    "peak_backlog": "peak queue backlog (coupons)",
    "served_p50_ms": "time in the service p50 (ms)",   # live: Server-Timing; model: the
    "served_p99_ms": "time in the service p99 (ms)",   # answer less its round trip
}
"""What the check compares, live against simulated, and how the table names it."""
ROOM_METRICS = {
    "room_peak": "waiting room's peak (users)",
    "room_empty_s": "waiting room empty again (s)",
}
"""Compared where the gateway is engaged: the room's size, read from Redis over time."""
WATCH_S = 0.02
"""How often the live run's watcher reads the room's size and the processes' CPU time."""
T = TypeVar("T")

WARM_UP_PRESSES = 200
"""Presses a fresh service is given before the runs (answered NOT_ACTIVE)."""
MAX_CONNECTIONS = 1000
"""The load generator's connections for presses, at most (each status stream has its own):
one per user up to this, as a crowd's browsers each have theirs. With fewer (64 at
first), presses waited in the generator for a connection while the service was slow,
and that wait counted as the service's answer latency."""
SETTLE_S = 60.0
"""Most a live run waits for its queue to drain after the last answer (a bound)."""


@dataclass(frozen=True)
class Level:
    """One load level: the plan's size and pace, and the consumer that serves it."""

    name: str
    users: int
    stock: int
    spread_s: float
    """Arrivals after the start are exponential with this mean."""
    consumer_batch: int
    """Queue entries per consumer batch (one consumer, live and in the model)."""
    rate_limit_per_s: int = 0
    """The service instance's own budget of issue calls a second, its gateway's rate
    limiter (0: none, and the model's gateway is off). The presses over it go to the
    waiting room, which admits ``admission_batch`` users every :data:`ADMISSION_TICK_S`."""
    admission_batch: int = 100

    @property
    def gateway(self) -> bool:
        """Is the gateway engaged: does the crowd meet a rate limit and a waiting room?"""
        return self.rate_limit_per_s > 0


TIME_LIMIT_MS = 1000.0
"""The gateway's time limiter, given to the live service and to the model alike."""
SATURATING_PACE = 4.0
"""How much faster the crowd presses at the saturating level. At the same pace, a
consumer storing one coupon per transaction kept up on a quiet machine (SQLite stored
540 a second against 276 issued): four times the pace issues about 1,000 a second."""


ADMISSION_TICK_S = 0.1
"""How often the worker's room admits a batch (``couponsim worker --tick-ms``), live and
in the model."""


def levels(users: int = 600, spread_s: float = 2.0) -> tuple[Level, Level, Level]:
    """A level the consumer keeps up with (batches of 50); one that saturates it, the same
    crowd pressing :data:`SATURATING_PACE` times as fast against a consumer storing one
    coupon per transaction; and one where the gateway is engaged: that fast crowd
    against an instance that lets through a quarter of the stock a second (its rate
    limit), the rest sent to a room that admits at about the same rate (a whole
    number of users a tick). A fifth of the users win; arrivals are exponential with
    mean ``spread_s`` (2 s: a pace a single service process keeps on a small shared
    machine)."""
    stock = max(1, users // 5)
    fast = spread_s / SATURATING_PACE
    limit = max(1, stock // 4)
    return (Level("keeps up", users, stock, spread_s, 50),
            Level("saturates", users, stock, fast, 1),
            Level("gateway engaged", users, stock, fast, 50, rate_limit_per_s=limit,
                  admission_batch=max(1, round(limit * ADMISSION_TICK_S))))


@dataclass(frozen=True)
class Instance:
    """What the model's one service instance is given, measured on the live one (ms)."""

    cpu_ms: float
    """CPU per press."""
    room_poll_cpu_ms: float
    """CPU per ask of a waiting user's page."""
    client_rtt_ms: float
    """The load generator's round trip to it, outside its CPU."""


def scenario_for(level: Level, coupon_id: str, profile: Path | None = None,
                 seed: int = 1, instance: Instance | None = None,
                 host: HostSpec | None = None) -> Scenario:
    """The scenario both runs play: black_friday's spike without early presses, retries,
    bots or checkouts (the load generator replays planned clicks only), one consumer,
    status polled every 20 ms (the live client is pushed its status) and the room's
    page asking as the service's does. ``instance``: the model's one service instance
    (None: the instance is not modelled). ``host``: the cores the model's processes
    share, and the load on them from outside (None: each process has a core)."""
    overrides = [f"seed={seed}", f"event.coupon_id={json.dumps(coupon_id)}",
                 f"event.stock={level.stock}", f"traffic.users={level.users}",
                 f"traffic.spread_s={level.spread_s}", "traffic.early_share=0",
                 "traffic.retry_share=0", "traffic.bots=0", "traffic.status_poll_ms=20",
                 # the load generator's presses carry an Idempotency-Key, which the
                 # live service's sold-out flag never answers (it may be a retry)
                 "sold_out_flag=false",
                 f"traffic.room_poll_ms={ROOM_POLL_MS}", "checkout.share=0", "consumers.count=1",
                 f"consumers.batch_size={level.consumer_batch}", "consumers.poll_ms=5"]
    if profile is not None:
        overrides.append(f"latency.profile={json.dumps(str(profile))}")
    if instance is not None:
        overrides += ["service.instances=1", f"service.cpu_ms={instance.cpu_ms}",
                      f"service.room_poll_cpu_ms={instance.room_poll_cpu_ms}",
                      f"service.client_rtt_ms={instance.client_rtt_ms}"]
    if host is not None:
        overrides += [f"host.cores={host.cores}",
                      f"host.background_cores={host.background_cores}"]
    if level.gateway:   # as the live service's: a limiter refusing at once, its breaker
        overrides += ["gateway.enabled=true", f"gateway.rate_limit_per_s={level.rate_limit_per_s}",
                      "gateway.rate_limit_timeout_ms=0", f"gateway.time_limit_ms={TIME_LIMIT_MS}",
                      f"gateway.breaker_wait_s={BreakerConfig().wait_in_open_s}",
                      f"gateway.admission_batch={level.admission_batch}",
                      f"gateway.admission_interval_s={ADMISSION_TICK_S}"]
    return load_scenario("black_friday", overrides)


def clicks_of(scenario: Scenario) -> list[Click]:
    """The scenario's planned clicks, drawn from the same streams the model draws them
    from: the live run replays exactly the clicks the model plays."""
    streams = random_streams(scenario.seed)
    return plan(scenario.traffic, streams["arrivals"], streams["clicks"])


@dataclass
class Run:
    """What one run recorded, live or simulated, in ms from the start of the sale."""

    requests: pd.DataFrame
    """One row per click: user, click (the plan's id), kind, pressed_ms, answered_ms,
    answer, final_state, final_ms."""
    coupons: pd.DataFrame
    """One row per stored coupon: request, issued_ms, stored_ms, pressed_ms."""
    report: InvariantReport
    stock: int
    room: pd.DataFrame
    """The waiting room's size over time: at_ms, waiting (Redis's own count)."""
    press_lag_ms: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    """Live only: how late the load generator pressed, against the plan."""
    cores: dict[str, float] = field(default_factory=dict)
    """Live only: the cores each process kept busy (CPU seconds over wall seconds), from
    the first press until the last coupon was stored: the service, the worker, Redis,
    and the load generator."""

    def metrics(self) -> dict[str, float]:
        answer = self.requests.answered_ms - self.requests.pressed_ms
        served = self.requests.served_ms
        to_store = self.coupons.stored_ms - self.coupons.pressed_ms
        sold = len(self.coupons) >= self.stock
        stored = np.sort(self.coupons.stored_ms.to_numpy())
        span_s = (stored[-1] - stored[0]) / 1000 if len(stored) > 1 else 0.0
        return {
            "sell_out_s": float(self.coupons.issued_ms.max()) / 1000 if sold else float("nan"),
            "answer_p50_ms": float(answer.quantile(0.5)),
            "answer_p99_ms": float(answer.quantile(0.99)),
            "stored_p50_ms": float(to_store.quantile(0.5)),
            "stored_p95_ms": float(to_store.quantile(0.95)),
            "stored_p99_ms": float(to_store.quantile(0.99)),
            "issue_rate_per_s": len(self.coupons) / float(self.coupons.issued_ms.max()) * 1000
            if len(self.coupons) else float("nan"),
            "throughput_per_s": (len(stored) - 1) / span_s if span_s > 0 else float("nan"),
            "winners_told_s": float(self.requests.final_ms[
                self.requests.final_state == "COMPLETED"].max()) / 1000,
            "all_final_s": float(self.requests.final_ms.max()) / 1000,
            "peak_backlog": float(backlog(self.coupons).max()),
            "served_p50_ms": float(served.quantile(0.5)),
            "served_p99_ms": float(served.quantile(0.99)),
            "room_peak": float(self.room.waiting.max()) if len(self.room) else 0.0,
            "room_empty_s": room_empty_s(self.room),
        }


def room_empty_s(room: pd.DataFrame) -> float:
    """When the room was seen empty for good: the first reading after the last one with
    anyone waiting (s; NaN if it never held anyone, or never emptied). A bound from
    above, by the sampling interval (live 20 ms, the model's timeline 100 ms)."""
    held = room.at_ms[room.waiting > 0]
    if held.empty:
        return float("nan")
    empty = room.at_ms[(room.waiting == 0) & (room.at_ms > held.max())]
    return float(empty.min()) / 1000 if not empty.empty else float("nan")


def backlog(coupons: pd.DataFrame) -> pd.Series:
    """Coupons issued and not yet stored, at each issue or store (from the rows alone)."""
    moves = pd.concat([pd.Series(1, index=coupons.issued_ms),
                       pd.Series(-1, index=coupons.stored_ms)]).sort_index(kind="stable")
    return moves.cumsum()


# -- the model --------------------------------------------------------------------------

def run_model(scenario: Scenario) -> Run:
    """Simulate the scenario on a fresh fakeredis and SQLite file (the profile, not this
    store, sets the costs)."""
    with tempfile.TemporaryDirectory(prefix="couponsim-twin-") as directory:
        repository = Repository.from_url(f"sqlite:///{directory}/model.sqlite")
        url = f"fake://twin-model-{secrets.token_hex(4)}"
        try:
            outcome = simulate(scenario, SyncDriver(connect(url), url, repository))
            rows = _rows(repository.engine, scenario.event.coupon_id)
        finally:
            repository.engine.dispose()
    requests = outcome.requests
    round_trip_ms = scenario.service.client_rtt_ms if scenario.service.instances else 0.0
    table = pd.DataFrame({
        "user": requests.user, "click": requests.request, "kind": requests.kind,
        "pressed_ms": requests.arrival_s * 1000,
        "answered_ms": requests.arrival_s * 1000 + requests.answer_ms,
        "served_ms": requests.answer_ms - round_trip_ms,
        "answer": requests.answer, "final_state": requests.final_state,
        "final_ms": requests.final_s * 1000})
    pressed = dict(zip(table.click, table.pressed_ms, strict=True))
    rows["stored_ms"] = rows.request.map(outcome.run.stored_ms) - START_MS
    rows["issued_ms"] = rows.issued_ms - START_MS
    rows["pressed_ms"] = rows.request.map(pressed)
    room = pd.DataFrame({"at_ms": outcome.timeline.t_s * 1000,
                         "waiting": outcome.timeline.room})
    return Run(table, rows, outcome.report, scenario.event.stock, room)


def _rows(engine: Engine, coupon_id: str) -> pd.DataFrame:
    with engine.connect() as connection:
        found = connection.execute(select(UserCoupon.request_id, UserCoupon.issued_at_ms)
                                   .where(UserCoupon.coupon_id == coupon_id)).all()
    return pd.DataFrame({"request": [str(request) for request, _ in found],
                         "issued_ms": [float(issued) for _, issued in found]})


# -- the live service -------------------------------------------------------------------

STAMP_TABLE = "twin_stored"
_STAMPS = {
    "postgresql": [
        f"CREATE TABLE IF NOT EXISTS {STAMP_TABLE} (request_id varchar(64), "
        "coupon_id varchar(64), stored_ms double precision)",
        "CREATE OR REPLACE FUNCTION twin_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN INSERT INTO {STAMP_TABLE} VALUES (NEW.request_id, NEW.coupon_id, "
        "extract(epoch from clock_timestamp()) * 1000); RETURN NULL; END $$",
        "DROP TRIGGER IF EXISTS twin_stamp ON user_coupons",
        "CREATE TRIGGER twin_stamp AFTER INSERT ON user_coupons FOR EACH ROW "
        "EXECUTE FUNCTION twin_stamp()"],
    "sqlite": [
        f"CREATE TABLE IF NOT EXISTS {STAMP_TABLE} (request_id text, coupon_id text, "
        "stored_ms real)",
        "DROP TRIGGER IF EXISTS twin_stamp",
        "CREATE TRIGGER twin_stamp AFTER INSERT ON user_coupons BEGIN "
        f"INSERT INTO {STAMP_TABLE} VALUES (NEW.request_id, NEW.coupon_id, "
        "(julianday('now') - 2440587.5) * 86400000.0); END"]}
_UNSTAMPS = {
    "postgresql": ["DROP TRIGGER IF EXISTS twin_stamp ON user_coupons",
                   "DROP FUNCTION IF EXISTS twin_stamp()", f"DROP TABLE IF EXISTS {STAMP_TABLE}"],
    "sqlite": ["DROP TRIGGER IF EXISTS twin_stamp", f"DROP TABLE IF EXISTS {STAMP_TABLE}"]}


@contextmanager
def stamping(engine: Engine) -> Iterator[None]:
    """The database stamps each coupon row as it is inserted, with its own clock (a
    trigger into a side table): when a coupon was stored, from the database itself."""
    dialect = engine.dialect.name
    if dialect not in _STAMPS:
        raise NotImplementedError(f"the twin check stamps rows on PostgreSQL or SQLite, "
                                  f"not {dialect}")
    with engine.begin() as connection:
        for statement in _STAMPS[dialect]:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as connection:
            for statement in _UNSTAMPS[dialect]:
                connection.execute(text(statement))


def _stamps(engine: Engine, coupon_id: str) -> dict[str, float]:
    with engine.connect() as connection:
        found = connection.execute(text(f"SELECT request_id, stored_ms FROM {STAMP_TABLE} "
                                        "WHERE coupon_id = :c"), {"c": coupon_id}).all()
    return {str(request): float(stored) for request, stored in found}


_DEPLOYMENT_SECRET = secrets.token_hex(32)
"""The service and its worker are one deployment: one secret for the codes and proofs."""


def _process(*arguments: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``couponsim ARGUMENTS`` as one deployment: the twin's secret, unbuffered output."""
    return couponsim_process(*arguments, env=os.environ | {
        "PYTHONUNBUFFERED": "1", SECRET_ENV: _DEPLOYMENT_SECRET})


@dataclass
class LiveStack:
    """``couponsim serve`` (no worker) on one Redis and database, warmed up, for the runs
    of one level; each run starts ``couponsim worker`` with its consumer batch."""

    redis_url: str
    db_url: str
    rate_limit_per_s: int = 0
    """The service's own budget a second (``couponsim serve --rate-limit``); 0: none."""
    url: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    """The processes the runs' watcher times, by role."""
    cpu_ms_per_press: float = 0.0
    """The service process's CPU time per press, over presses made one at a time once it
    was warm. Presses made at once are coalesced into one script call and cost less
    each (0.2 ms against 0.7 ms here, #18): the levels' presses mostly come one at a
    time, and the model's instance charges one cost per press."""
    cpu_ms_per_room_poll: float = 0.0
    """The service process's CPU time per ask of the waiting room's page (its poll), one
    at a time, by users waiting in a room's pre-queue."""
    client_rtt_ms: float = 0.0
    """The load generator's median round trip to the bare route, one request at a time."""

    @contextmanager
    def serving(self) -> Iterator["LiveStack"]:
        port = free_port()
        with _process("serve", "--no-worker", "--quiet", "--port", str(port),
                      "--rate-limit", str(self.rate_limit_per_s),
                      "--time-limit-ms", str(TIME_LIMIT_MS), *self._stores()) as service:
            self.url = f"http://127.0.0.1:{port}"
            self.pids = {"service": service.pid, "load generator": os.getpid()}
            redis_pid = _local_redis_pid(self.redis_url)
            if redis_pid is not None:
                self.pids["Redis"] = redis_pid
            wait_until_ready(f"{self.url}/livez", service)
            self._warm(psutil.Process(service.pid))
            self.client_rtt_ms = statistics.median(_run_coroutine(_round_trips(self.url)))
            yield self

    @contextmanager
    def working(self, level: Level) -> Iterator[None]:
        """A worker of its own for one run: a worker keeps a consumer for every event it
        has seen, and earlier runs' consumers would share its process."""
        with _process("worker", "--consumer-batch", str(level.consumer_batch),
                      "--admission-batch", str(level.admission_batch),
                      "--tick-ms", str(ADMISSION_TICK_S * 1000), *self._stores()) as worker:
            self.pids["worker"] = worker.pid
            try:
                yield
            finally:
                del self.pids["worker"]

    def _stores(self) -> tuple[str, ...]:
        return ("--redis-url", self.redis_url, "--db-url", self.db_url)

    def _warm(self, service: psutil.Process, presses: int = WARM_UP_PRESSES) -> None:
        """Presses on an event not yet open (its room's pre-queue takes them: nothing is
        issued), not followed, the event purged after: a fresh process's first requests
        pay for its pools, scripts and code paths. Then the service's CPU is timed over
        presses one at a time (the route, the gateway as this level has it, the script
        calls: with a rate limit, most are refused by it and only join the room) and
        over those users' asks of the room, one at a time."""
        coupon = f"twin-warm-{secrets.token_hex(4)}"
        driver = SyncDriver(connect(self.redis_url), self.redis_url)
        try:
            driver.run(lifecycle.warm_up(CouponEvent(
                coupon, 1, name="warm-up", starts_at_ms=int(time.time() * 1000) + 3_600_000)))
            _run_coroutine(_press_only(self.url, coupon, presses))
            before_s = _cpu_s(service)
            _run_coroutine(_press_only(self.url, coupon, presses, at_once=False))
            pressed_s = _cpu_s(service)
            _run_coroutine(_ask_room(self.url, coupon, presses))
            self.cpu_ms_per_press = 1000 * (pressed_s - before_s) / presses
            self.cpu_ms_per_room_poll = 1000 * (_cpu_s(service) - pressed_s) / presses
        finally:
            driver.run(lifecycle.purge(coupon))
            driver.client.close()


def _cpu_s(process: psutil.Process) -> float:
    """The CPU time ``process`` has used so far (user and system), in seconds."""
    times = process.cpu_times()
    return float(times.user + times.system)


def run_live(stack: LiveStack, scenario: Scenario, repository: Repository,
             lead_s: float = 0.5) -> Run:
    """Warm the event up, wait until the worker has opened it and its consumer reads the
    queue, replay the plan from the first whole second ``lead_s`` away (the service's
    rate limiter counts whole seconds, the model's from the start), wait for the queue
    to drain, then read what Redis and the database hold. A watcher reads the room's
    size and the processes' CPU time all along."""
    coupon = scenario.event.coupon_id
    driver = SyncDriver(connect(stack.redis_url), stack.redis_url, repository)
    keys = CouponKeys(coupon)
    try:
        driver.run(warm_up_fresh(CouponEvent(coupon, scenario.event.stock, name="twin",
                                             discount_value=scenario.event.discount_value,
                                             starts_at_ms=int(time.time() * 1000))))
        # The worker starts the coupon's consumer when it first sees the event, before
        # it opens it (a consumer blocked in XREADGROUP is not listed by Redis 7.0 until
        # it is given an entry: there is nothing to wait on for it)
        _wait("the worker to open the event",
              lambda: driver.client.get(keys.active) == "active")
        start_ms = math.ceil(time.time() + lead_s) * 1000.0
        with watching(stack.redis_url, keys.waiting, stack.pids) as seen:
            records = _run_coroutine(_replay(stack.url, coupon, clicks_of(scenario),
                                             start_ms))
            _wait("the consumer to store every coupon (the database stamps each row in the "
                  "transaction that stores it)", lambda: driver.run(
                      check_invariants(coupon, with_database=True)).in_flight == 0, SETTLE_S)
        report = driver.run(check_invariants(coupon, with_database=True))
        rows = _rows(repository.engine, coupon)
        stamps = _stamps(repository.engine, coupon)
    finally:
        driver.client.close()
    requests = pd.DataFrame(records)
    for column in ("pressed_ms", "answered_ms", "final_ms", "planned_ms"):
        requests[column] -= start_ms
    pressed = dict(zip(requests.request_id, requests.pressed_ms, strict=False))
    rows["issued_ms"] -= start_ms
    rows["stored_ms"] = rows.request.map(stamps) - start_ms
    rows["pressed_ms"] = rows.request.map(pressed)
    room = pd.DataFrame({"at_ms": [at - start_ms for at, _, _ in seen],
                         "waiting": [waiting for _, waiting, _ in seen]})
    return Run(requests.drop(columns=["request_id"]), rows, report, scenario.event.stock,
               room, press_lag_ms=requests.pressed_ms - requests.planned_ms,
               cores=_cores(seen, start_ms, start_ms + float(rows.stored_ms.max())))


Seen = list[tuple[float, int, dict[str, float]]]
"""What the watcher saw: (wall ms, users in the room, CPU seconds of each process)."""


@contextmanager
def watching(redis_url: str, room_key: str, pids: dict[str, int]) -> Iterator[Seen]:
    """A thread that reads, every :data:`WATCH_S` until the block ends, the room's size
    in Redis and the CPU time the stack's processes have used: where the machine's two
    cores went during a run, which the model's costs, each measured alone, do not say."""
    seen: Seen = []
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    client = connect(redis_url)
    done = threading.Event()

    failed: list[BaseException] = []

    def watch() -> None:
        try:
            while not done.is_set():
                cpu = {name: _cpu_s(process) for name, process in processes.items()}
                seen.append((_now_ms(), int(client.zcard(room_key)), cpu))
                done.wait(WATCH_S)
        except Exception as exc:      # a process gone, Redis lost: the run's figures are
            failed.append(exc)        # incomplete, and the run says so (below)

    watcher = threading.Thread(target=watch, name="twin-watcher", daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()
        client.close()
    if failed:
        raise RuntimeError("the twin check's watcher stopped during the run") from failed[0]


def _local_redis_pid(redis_url: str) -> int | None:
    """The pid of the Redis server, if it is a redis-server process on this machine: a
    Redis elsewhere (a container, another host) reports a pid that means nothing here,
    and its cores are not this machine's."""
    client = connect(redis_url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    try:
        return pid if psutil.Process(pid).name().startswith("redis-server") else None
    except psutil.Error:
        return None


def _cores(seen: Seen, from_ms: float, to_ms: float) -> dict[str, float]:
    """The cores each process kept busy between two wall times (the samples nearest
    within them)."""
    inside = [sample for sample in seen if from_ms <= sample[0] <= to_ms]
    if len(inside) < 2:
        return {}
    (first_ms, _, before), (last_ms, _, after) = inside[0], inside[-1]
    return {name: (after[name] - before[name]) * 1000 / (last_ms - first_ms)
            for name in before}


def outside_load(live: list[Run]) -> HostSpec:
    """This machine's cores, and the share of them the live runs' processes outside the
    model kept busy (the load generator, Redis's own CPU), their median over the runs."""
    cores = os.cpu_count() or 1
    busy = statistics.median(run.cores.get("load generator", 0.0) + run.cores.get("Redis", 0.0)
                             for run in live)
    return HostSpec(cores, min(busy, cores - 0.5))


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on an event loop of its own: in a thread of its own where
    this thread runs one already (a notebook's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _wait(what: str, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout_s:g} s")
        time.sleep(0.02)


def _now_ms() -> float:
    return time.time() * 1000


async def _replay(url: str, coupon: str, clicks: list[Click],
                  start_ms: float) -> list[dict[str, Any]]:
    """Press every planned click at its time (wall clock), follow each accepted one on its
    status stream to the end, and record press, answer and final status. The presses
    share a pool of connections opened before the start (a bare HTTP client: httpx's
    CPU per exchange would make the generator, not the service, set the pace)."""
    pool = Pool(url, min(MAX_CONNECTIONS, len({click.user for click in clicks})))
    await pool.open()
    try:
        return list(await asyncio.gather(*(_press(pool, coupon, click, start_ms)
                                           for click in clicks)))
    finally:
        await pool.close()


async def _press_only(url: str, coupon: str, presses: int,
                      at_once: bool = True) -> list[dict[str, Any]]:
    """``presses`` presses by as many users, their answers not followed: all at once, or
    one at a time."""
    pool = Pool(url, min(MAX_CONNECTIONS, presses) if at_once else 1)
    await pool.open()
    try:
        body = json.dumps({"coupon_id": coupon}).encode()
        requests = (pool.request("POST", "/api/v1/coupons/issue",
                                 {"X-User-ID": f"warm{n}", "Content-Type": "application/json"},
                                 body) for n in range(presses))
        answers = (await asyncio.gather(*requests) if at_once
                   else [await request for request in requests])
        return [{"status": answer.status} for answer in answers]
    finally:
        await pool.close()


async def _ask_room(url: str, coupon: str, users: int) -> None:
    """The room's page asks of ``users`` (``warm0``...), one at a time."""
    pool = Pool(url, 1)
    await pool.open()
    try:
        for n in range(users):
            await pool.request("GET", f"/api/v1/coupons/{coupon}/waiting-room",
                               {"X-User-ID": f"warm{n}"})
    finally:
        await pool.close()


async def _round_trips(url: str, count: int = 200) -> list[float]:
    """``count`` requests to the bare route (/livez), one at a time: the generator's own
    round trip, in ms, with no queue in the service."""
    pool = Pool(url, 1)
    await pool.open()
    try:
        times = []
        for _ in range(count):
            started = _now_ms()
            await pool.request("GET", "/livez", {})
            times.append(_now_ms() - started)
        return times
    finally:
        await pool.close()


async def _press(pool: Pool, coupon: str, click: Click, start_ms: float) -> dict[str, Any]:
    planned = start_ms + click.at_ms
    await asyncio.sleep(max(0.0, (planned - _now_ms()) / 1000))
    pressed = _now_ms()
    answer = await pool.request("POST", "/api/v1/coupons/issue",
                                {"X-User-ID": click.user, "Idempotency-Key": click.request,
                                 "Content-Type": "application/json"},
                                json.dumps({"coupon_id": coupon}).encode())
    answered = _now_ms()
    body = answer.json()
    served = answer.headers.get("server-timing", "").removeprefix("app;dur=")
    record = {"user": click.user, "click": click.request, "kind": click.kind.value,
              "planned_ms": planned, "pressed_ms": pressed, "answered_ms": answered,
              "served_ms": float(served) if served else float("nan"),
              "request_id": body.get("requestId", ""),
              "answer": "ISSUED" if answer.status == 202
              else str(body.get("code", answer.status)).upper().replace("-", "_"),
              "final_state": "", "final_ms": answered}
    if answer.status != 202:
        record["final_state"] = record["answer"]
        return record
    location = answer.headers["location"]
    if body.get("status") == "QUEUED":      # the service's gateway sent it to the room
        record["answer"] = "QUEUED"
        room = await _wait_in_room(pool, location, click.user)
        if room.get("state") != "ISSUED":
            record["final_state"], record["final_ms"] = str(room.get("state")), _now_ms()
            return record
        location = str(room["statusUrl"])
        record["request_id"] = room.get("requestId") or record["request_id"]
    final = await first_event(pool, location, {}, lambda event: _state(event) in FINAL)
    record["final_state"], record["final_ms"] = _state(final or {}) or "NO_FINAL", _now_ms()
    return record


async def _wait_in_room(pool: Pool, location: str, user: str) -> dict[str, Any]:
    """Poll the waiting room as its page does (:data:`ROOM_POLL_MS` after each answer)
    until it answers."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        room: dict[str, Any] = (await pool.request("GET", location, {"X-User-ID": user})).json()
        if room.get("state") in ROOM_FINAL:
            return room
        await asyncio.sleep(ROOM_POLL_MS / 1000)
    return {"state": "GAVE_UP"}


def _state(event: dict[str, str]) -> str:
    return str(json.loads(event["data"]).get("status", "")) if "data" in event else ""


# -- the check --------------------------------------------------------------------------

@dataclass
class LevelResult:
    level: Level
    live: list[Run]
    model: Run
    clicks: list[Click]
    instance: Instance | None = None
    """The model's one instance, as measured on the live service (None: not modelled)."""
    host: HostSpec | None = None
    """The machine the model's processes shared (None: each had a core of its own)."""

    def table(self) -> pd.DataFrame:
        """Per metric: the live runs' median and range, the model's value, and the
        prediction error (model / live median - 1)."""
        live = pd.DataFrame([run.metrics() for run in self.live])
        model = self.model.metrics()
        rows = []
        for name, label in (METRICS | ROOM_METRICS if self.level.gateway else METRICS).items():
            median = float(live[name].median())
            rows.append({"level": self.level.name, "metric": label, "key": name,
                         "live_median": median, "live_min": float(live[name].min()),
                         "live_max": float(live[name].max()), "simulated": model[name],
                         "error_pct": 100 * (model[name] / median - 1) if median else
                         float("nan")})
        return pd.DataFrame(rows)


@dataclass
class TwinResult:
    levels: list[LevelResult]
    profile: dict[str, float]
    """The calibrated ``[latency]`` the model ran with."""
    calibrate_s: float

    def table(self) -> pd.DataFrame:
        return pd.concat([level.table() for level in self.levels], ignore_index=True)


def _live_run(stack: LiveStack, repository: Repository, level: Level,
              scenario: Scenario) -> Run:
    """One live run with a worker of its own; its coupon purged once the worker stopped."""
    try:
        with stack.working(level):
            return run_live(stack, scenario, repository)
    finally:
        driver = SyncDriver(connect(stack.redis_url), stack.redis_url, repository)
        driver.run(lifecycle.purge(scenario.event.coupon_id, with_database=True))
        driver.client.close()


def twin_check(redis_url: str, db_url: str, users: int = 600, runs: int = 3,
               seed: int = 1, progress: Callable[[str], None] | None = None,
               chosen: tuple[Level, ...] | None = None,
               plan_size: CalibrationPlan = SMALL_CALIBRATION,
               service_instance: bool = True, shared_host: bool = True) -> TwinResult:
    """Calibrate, then at each level run the plan ``runs`` times live and once in the
    model. ``progress`` is told each step as it starts. ``service_instance``: the model
    has the live service's one instance, with the CPU per press and per ask of the
    room's page measured on it (False: the model without instances, as before they
    were modelled). ``shared_host``: the model's processes share this machine's cores,
    with the load the live runs measured from outside the model (False: each has a
    core of its own)."""
    say = progress or (lambda _step: None)
    redis_url = resolve(redis_url)          # local://: one server, shared by the children
    say("calibrate")
    calibration = calibrate(redis_url, db_url, plan_size, progress=False)
    results = []
    with tempfile.TemporaryDirectory(prefix="couponsim-twin-") as directory:
        profile = Path(directory) / "profile.toml"
        save_profile(calibration, profile, "Measured by the twin check just before its runs.")
        repository = Repository.from_url(db_url)
        try:
            with stamping(repository.engine):
                for level in chosen or levels(users):
                    live = []
                    with LiveStack(redis_url, db_url, level.rate_limit_per_s
                                   ).serving() as stack:
                        for n in range(runs):
                            say(f"{level.name}: live run {n + 1} of {runs}")
                            live.append(_live_run(stack, repository, level, scenario_for(
                                level, f"twin-{secrets.token_hex(4)}", profile, seed)))
                    say(f"{level.name}: model")
                    instance = (Instance(stack.cpu_ms_per_press, stack.cpu_ms_per_room_poll,
                                         stack.client_rtt_ms) if service_instance else None)
                    host = outside_load(live) if shared_host else None
                    scenario = scenario_for(level, "twin-model", profile, seed, instance, host)
                    results.append(LevelResult(level, live, run_model(scenario),
                                               clicks_of(scenario), instance, host))
        finally:
            repository.engine.dispose()
    return TwinResult(results, calibration.latency, calibration.wall_s)
