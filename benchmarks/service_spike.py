"""The design's spike against the live service: ``--users`` distinct users press "issue"
at the instant the event opens (everyone at 14:00:00), for ``--stock`` coupons; how
long until every user has a final answer, and the p99 of it (issue #10).

The service runs in a subprocess (``couponsim serve`` with its worker: consumers
persist coupons into PostgreSQL, the schedulers open the event, admission empties
the waiting room), on a real Redis. The event is defined through the admin route
to open ``--lead-s`` after launch, so every user is ready at the opening instant.

One asyncio load generator (httpx) plays every user as its client would:

- 410 sold-out, 409, 403: the answer, final at once;
- 202 PROCESSING: read the status stream (SSE) at ``Location`` to COMPLETED/FAILED;
- 202 QUEUED: poll the waiting room every ``--poll-s`` (as the waiting-room page
  does) until it says ISSUED (then read the status stream it names) or refuses;
- 429: wait ``Retry-After`` and send again; a 5xx or a transport error is an error.

Each user's time-to-final runs from the opening instant to their final answer.
All users are in flight at once, but at most ``--connections`` HTTP exchanges
are: the generator lends its connections one exchange at a time, a user already
answered by the issue route (status stream, room poll) before a press not yet
sent, so the winners' streams do not queue behind the crowd's presses. A press
that waits for a connection is a user waiting for their answer, so the figure
includes the generator's own queue; the time each press left the generator is
reported beside it to tell the two apart. ``--max-in-flight`` bounds the crowd
itself (users enter as others finish), which changes what the figure means: the
output says so. ``--early-s`` makes the crowd press before the opening, as eager
users with fast clocks do (the room's pre-queue takes them). Coupons issued are
read from Redis and the database by the invariant checker, never counted here.

On 2 cores shared by both, the generator is the bottleneck: httpx costs it about
1.5 ms of CPU per exchange, so 50,000 presses leave over a minute or more, not at
an instant, and the time until every user is final measures the generator's pace
(the output says so when its event loop is saturated). The service's own timing
of the issue route, from its /metrics, is printed beside it.

    createdb -h 127.0.0.1 -U postgres couponsim_spike
    python benchmarks/service_spike.py [--users 50000] [--stock 1000] [--connections 200]
        [--redis-url redis://127.0.0.1:6379/10]
        [--db-url postgresql+psycopg://postgres@127.0.0.1:5432/couponsim_spike]
        [--poll-s 1] [--lead-s 5] [--early-s 0] [--max-in-flight 0] [--progress-s 5]
        [--csv users.csv]

Exit code 1 when an invariant is broken or a user got no answer.
"""

import argparse
import asyncio
import csv
import gc
import heapq
import json
import math
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count, pairwise
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from couponsim.connection import redact
from couponsim.drivers.sync import SyncDriver
from couponsim.flows import lifecycle
from couponsim.persistence.repository import Repository
from couponsim.verify import InvariantReport, check_invariants
from live_service import served

COUPON = "bench-spike"
ISSUE = "/api/v1/coupons/issue"
ROOM = f"/api/v1/coupons/{COUPON}/waiting-room"
ROOM_ANSWERS = frozenset({"SOLD_OUT", "DUPLICATE", "NOT_ACTIVE", "FAILED"})
"""Room states that refuse the user for good (ISSUED sends them to the status stream)."""
MAX_RETRIES = 20
"""429s one user sits out before the generator counts it as an error."""
KEEPALIVE_S = 2.0
"""Drop a connection idle this long, before uvicorn does (5 s): reusing one the server
is closing at that instant fails the request with a ReadError."""
FOLLOW, PRESS = 0, 1
"""Priorities at the generator's connections: a user the issue route has answered
(following a status, polling the room) goes before a press not yet sent."""


class NoAnswer(Exception):
    """The service gave this user no answer: a 5xx, a transport error, a broken stream."""


@dataclass
class UserResult:
    answer: str
    """COMPLETED, SOLD_OUT, DUPLICATE, FAILED (reason), TIMEOUT, ERROR ..."""
    seconds: float
    """From the opening instant to the final answer."""
    first: str
    """The issue route's first answer, e.g. ``202 QUEUED (queued: before the start)``."""
    sent_s: float
    """From the opening instant until the press left (answered, less httpx's elapsed)."""
    first_s: float
    """From the opening instant until the issue route answered."""

    @property
    def error(self) -> bool:
        return self.answer.startswith("ERROR")


class Connections:
    """The generator's connections, lent one HTTP exchange at a time (a whole status
    stream included), follow-ups before presses.

    Waiters are served by priority (FOLLOW before PRESS), then in order. Without it the
    winners' status streams would queue behind every press still waiting to leave,
    which a real crowd, each user on their own connection, never does.

    Each connection is an httpx client of its own (a pool of one), never a share of
    one big pool: httpcore walks its whole pool, and for each idle connection the pool
    again, on every request (most of the generator's CPU with 200 connections), and
    hands one idle connection to every request queued at that moment; all but one
    lose it and wait again, and under a steady load some lost for 8 s on end.
    """

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self._free: list[httpx.AsyncClient] = []
        self._waiting: list[tuple[int, int, asyncio.Future[httpx.AsyncClient]]] = []
        self._arrivals = count()

    def open(self) -> None:
        """Start lending. Until now every press waited in line: at the opening only the
        first presses wake, not the whole crowd at once (waking 50,000 tasks took the
        generator 2 s, during which nothing was sent)."""
        for client in self.clients:
            self._give_back(client)

    @asynccontextmanager
    async def lend(self, priority: int) -> AsyncIterator[httpx.AsyncClient]:
        if self._free and not self._waiting:
            client = self._free.pop()
        else:
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._arrivals), waiter))
            client = await waiter
        try:
            yield client
        finally:
            self._give_back(client)

    def _give_back(self, client: httpx.AsyncClient) -> None:
        while self._waiting:
            _priority, _n, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(client)
                return
        self._free.append(client)


@dataclass
class Crowd:
    """What every simulated user shares: the connections, the clock, the tallies."""

    connections: Connections
    opens_at: float
    """The opening instant on ``time.perf_counter``'s clock."""
    poll_s: float
    final: int = 0
    errors: int = 0
    pressed: int = 0
    in_room: int = 0
    streaming: int = 0
    room_polls: int = 0
    largest_room: int = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.opens_at


# --- one user -------------------------------------------------------------------------


async def exchange(crowd: Crowd, priority: int, method: str, url: str, user: str,
                   body: dict[str, str] | None = None) -> httpx.Response:
    """One request on a lent connection; 429 waits Retry-After and sends again."""
    for _ in range(MAX_RETRIES):
        try:
            async with crowd.connections.lend(priority) as client:
                if priority == PRESS:
                    crowd.pressed += 1
                response = await client.request(method, url, json=body,
                                                headers={"X-User-ID": user})
        except httpx.TransportError as exc:
            raise NoAnswer(f"{type(exc).__name__} on {method} {url.split('/')[-1]}") from None
        if response.status_code >= 500:
            raise NoAnswer(f"{response.status_code} {refusal(response)} on {method} "
                           f"{url.split('/')[-1]}")
        if response.status_code != 429:
            return response
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    raise NoAnswer(f"still rate limited after {MAX_RETRIES} tries")


def refusal(response: httpx.Response) -> str:
    """A 4xx problem document as an answer: its code, e.g. ``sold-out`` -> SOLD_OUT."""
    try:
        code = str(response.json().get("code", response.status_code))
    except ValueError:
        code = str(response.status_code)
    return code.upper().replace("-", "_")


def final_event(kind: str, data: str) -> str | None:
    """The answer an SSE event gives, or None while the request is still PROCESSING."""
    if kind == "timeout":
        return "TIMEOUT"
    status = json.loads(data)
    if status["status"] == "FAILED":
        return f"FAILED ({status.get('message') or 'no reason'})"
    return "COMPLETED" if status["status"] == "COMPLETED" else None


async def follow_status(crowd: Crowd, url: str) -> str:
    """Read the SSE status stream until a final state: COMPLETED, FAILED (reason), TIMEOUT."""
    crowd.streaming += 1
    try:
        async with crowd.connections.lend(FOLLOW) as client, client.stream(
                "GET", url, headers={"Accept": "text/event-stream"}) as response:
            if response.status_code != 200:
                raise NoAnswer(f"{response.status_code} on the status stream")
            kind, data = "", ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and kind:
                    if (answer := final_event(kind, data)) is not None:
                        return answer
                    kind, data = "", ""
    except httpx.TransportError as exc:
        raise NoAnswer(f"{type(exc).__name__} on the status stream") from None
    finally:
        crowd.streaming -= 1
    raise NoAnswer("the status stream ended without a final state")


async def room_view(crowd: Crowd, user: str) -> dict[str, Any]:
    """The caller's place in the room (RoomView in routes.py)."""
    response = await exchange(crowd, FOLLOW, "GET", ROOM, user)
    if response.status_code != 200:
        raise NoAnswer(f"{response.status_code} {refusal(response)} on GET waiting-room")
    crowd.room_polls += 1
    view: dict[str, Any] = response.json()
    crowd.largest_room = max(crowd.largest_room, view["queueSize"])
    return view


async def wait_in_room(crowd: Crowd, user: str, state: str) -> str:
    """Poll the room (as the page does, every ``poll_s``) until it answers."""
    crowd.in_room += 1
    status_url = None
    try:
        while state not in ROOM_ANSWERS | {"ISSUED"}:
            if state not in ("WAITING", "ADMITTED"):
                raise NoAnswer(f"the room says {state!r}")
            await asyncio.sleep(crowd.poll_s)
            view = await room_view(crowd, user)
            state, status_url = view["state"] or "NOT IN THE ROOM", view["statusUrl"]
        if state == "ISSUED" and status_url is None:  # told ISSUED by the press itself
            status_url = (await room_view(crowd, user))["statusUrl"]
    finally:
        crowd.in_room -= 1
    if state != "ISSUED":
        return state
    if status_url is None:
        raise NoAnswer("the room says ISSUED without a status URL")
    return await follow_status(crowd, status_url)


async def press(crowd: Crowd, user: str) -> UserResult:
    """One user, from the press to the final answer."""
    first, sent_s, first_s = "no answer", float("nan"), float("nan")
    try:
        response = await exchange(crowd, PRESS, "POST", ISSUE, user, {"coupon_id": COUPON})
        first_s = crowd.elapsed()
        sent_s = first_s - response.elapsed.total_seconds()
        if response.status_code != 202:
            first = f"{response.status_code} {refusal(response)}"
            answer = refusal(response) if response.status_code in (403, 409, 410) \
                else f"ERROR {first}"
        else:
            accepted = response.json()
            first = f"202 {accepted['status']} ({accepted['path']})"
            if accepted["status"] == "PROCESSING":
                answer = await follow_status(crowd, response.headers["Location"])
            else:  # QUEUED: the room may have answered already (ISSUED from an earlier click)
                answer = await wait_in_room(crowd, user, accepted["room_state"] or "WAITING")
    except NoAnswer as exc:
        answer = f"ERROR {exc}"
    except (KeyError, ValueError) as exc:  # a body not as routes.py documents it
        answer = f"ERROR unexpected answer ({type(exc).__name__}: {exc})"
    result = UserResult(answer, crowd.elapsed(), first, sent_s, first_s)
    crowd.final += 1
    crowd.errors += result.error
    return result


# --- the crowd ------------------------------------------------------------------------


async def progress(crowd: Crowd, users: int, every_s: float) -> None:
    """A line every few seconds: the run is long and quiet otherwise."""
    while True:
        await asyncio.sleep(every_s)
        print(f"  {crowd.elapsed():7.1f} s  {crowd.final:>7,}/{users:,} final, "
              f"{crowd.pressed:,} pressed, {crowd.in_room:,} in the room, "
              f"{crowd.streaming:,} on a status stream, {crowd.room_polls:,} room polls, "
              f"{crowd.errors:,} errors", flush=True)


async def loop_lag(lags: list[float], every_s: float = 0.1) -> None:
    """How late the generator's event loop wakes: large lags mean it, not the service,
    is the bottleneck."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(every_s)
        lags.append(time.perf_counter() - before - every_s)


async def sleep_until(instant: float) -> None:
    """Sleep until ``instant`` on ``time.perf_counter``'s clock."""
    await asyncio.sleep(max(0.0, instant - time.perf_counter()))


async def open_connections(clients: list[httpx.AsyncClient]) -> None:
    """Connect every client before the opening, as a user's browser has the page open:
    the presses do not pay for 200 TCP handshakes at the instant."""
    await asyncio.gather(*(client.get("/livez") for client in clients))


async def run_crowd(base: str, opens_at_wall: float, args: argparse.Namespace
                    ) -> tuple[list[UserResult], Crowd, list[float]]:
    """Every user in line before the opening instant, the connections lent from it on."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1,
                          keepalive_expiry=KEEPALIVE_S)
    clients = [httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0,
                                 verify=False)  # plain HTTP: no CA bundle (50 ms a client)
               for _ in range(args.connections)]
    crowd = Crowd(Connections(clients),
                  time.perf_counter() + opens_at_wall - time.time(), args.poll_s)
    bound = asyncio.Semaphore(args.max_in_flight or args.users)

    async def user(n: int) -> UserResult:
        async with bound:
            return await press(crowd, f"u{n:07d}")

    tasks = [asyncio.create_task(user(n)) for n in range(args.users)]
    press_at = crowd.opens_at - args.early_s
    await sleep_until(press_at - KEEPALIVE_S / 2)   # connected, and not idle long enough
    await open_connections(clients)                 # to be dropped before the press
    gc.freeze()   # the waiting crowd is long-lived: full collections need not walk it
    await sleep_until(press_at)
    crowd.connections.open()
    lags: list[float] = []
    watchers = [asyncio.create_task(progress(crowd, args.users, args.progress_s)),
                asyncio.create_task(loop_lag(lags))]
    try:
        results = await asyncio.gather(*tasks)
    finally:
        for watcher in watchers:
            watcher.cancel()
        for client in clients:
            await client.aclose()
    return results, crowd, lags


# --- the service and its resources -----------------------------------------------------


class Sampler(threading.Thread):
    """RSS and CPU time of some processes, sampled in a thread (not on the measured loop)."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: dict[str, list[tuple[float, int, float]]] = {n: [] for n in pids}
        self.every_s = every_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            for name, process in self.processes.items():
                try:
                    cpu = process.cpu_times()
                    self.samples[name].append((time.perf_counter(), process.memory_info().rss,
                                               cpu.user + cpu.system))
                except psutil.NoSuchProcess:
                    pass

    def summary(self, name: str, start: float, end: float) -> str:
        """Peak RSS, and CPU in cores: mean over [start, end], and the busiest interval."""
        window = [s for s in self.samples[name] if start <= s[0] <= end + self.every_s]
        if len(window) < 2:
            return "too short to sample"
        peak_rss = max(rss for _t, rss, _c in self.samples[name])
        mean = (window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0])
        busiest = max((c2 - c1) / (t2 - t1) for (t1, _, c1), (t2, _, c2) in pairwise(window))
        return (f"peak RSS {peak_rss / 2**20:,.0f} MiB, CPU {mean:.2f} cores mean, "
                f"{busiest:.2f} in the busiest {self.every_s:g} s")


def code_version() -> str:
    """The commit the service ran from, and whether src/ had uncommitted changes: the
    figures belong to that code."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    changed = len(git("status", "--porcelain", "--", "../src").splitlines())
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}" + (
        f" + uncommitted changes in {changed} files of src/" if changed else "")


def define_event(base: str, token: str, stock: int, lead_s: float) -> float:
    """The event through the admin route, opening ``lead_s`` from now; its wall time (s)."""
    starts_at_ms = int((time.time() + lead_s) * 1000)
    answer = httpx.post(f"{base}/api/v1/admin/coupons",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"coupon_id": COUPON, "stock": stock, "starts_at_ms": starts_at_ms})
    answer.raise_for_status()
    return starts_at_ms / 1000


def service_view(base: str) -> str:
    """The issue route as the service timed it (its own histogram, from the app's first
    byte to its answer's start) and the answers it counted: a delay the client saw
    and this did not happened before the app (accept, parsing) or in the generator."""
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics").text)
    within: dict[str, float] = {}
    told: Counter[str] = Counter()
    for family in families:
        for sample in family.samples:
            if (sample.name == "couponsim_request_seconds_bucket"
                    and sample.labels.get("route") == ISSUE):
                within[sample.labels["le"]] = sample.value
            elif sample.name == "couponsim_issue_answers_total":
                told[sample.labels["answer"]] += int(sample.value)
    total = within.get("+Inf", 0) or 1
    shares = ", ".join(f"{within[le] / total:.1%} within {float(le) * 1000:g} ms"
                       for le in ("0.01", "0.1", "1.0", "2.5") if le in within)
    answers = ", ".join(f"{label} {n:,}" for label, n in told.most_common())
    return f"{int(total):,} presses, {shares}; answers {answers}"


def settled_report(driver: SyncDriver, timeout_s: float = 30) -> InvariantReport:
    """The invariant report once no coupon is in flight any more (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    report = driver.run(check_invariants(COUPON, with_database=True))
    while report.in_flight and time.monotonic() < deadline:
        time.sleep(0.5)
        report = driver.run(check_invariants(COUPON, with_database=True))
    return report


# --- the report -----------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest rank: exact for the figures a reader checks."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return (f"min {min(values):6.2f}   p50 {quantile(values, 0.5):6.2f}   "
            f"p99 {quantile(values, 0.99):6.2f}   max {max(values):6.2f} s")


def tally(counter: Counter[str]) -> str:
    return "\n".join(f"    {n:>8,}  {label}" for label, n in counter.most_common())


def print_timing(results: list[UserResult], args: argparse.Namespace) -> None:
    """How long users waited, and how much of it the generator's queue explains."""
    answered = [r for r in results if not r.error]
    print(f"\nusers                   {len(results):,}   ({len(answered):,} answered, "
          f"{len(results) - len(answered):,} errors)")
    print(f"every user final after  {max(r.seconds for r in results):.2f} s")
    print(f"time to final answer    {spread([r.seconds for r in answered])}")
    for answer in sorted({r.answer for r in answered}):
        alike = [r for r in answered if r.answer == answer]
        print(f"  {answer:<21} {spread([r.seconds for r in alike])}")
        followed = [r.seconds - r.first_s for r in alike if r.first.startswith("202")]
        if followed:
            print(f"    after its 202       {spread(followed)}   (status stream, waiting room)")
    pressed = [r for r in results if not math.isnan(r.sent_s)]
    print(f"press left generator    {spread([r.sent_s for r in pressed])}   (waiting for "
          f"one of the generator's {args.connections} connections)")
    print(f"press round trip        {spread([r.first_s - r.sent_s for r in pressed])}")
    print(f"issue route answered    {spread([r.first_s for r in pressed])}")
    window = max(r.sent_s for r in pressed) - min(r.sent_s for r in pressed)
    print(f"presses sent            {len(pressed) / max(window, 1e-9):,.0f}/s on average: the "
          f"crowd's presses took {window:.1f} s to leave the generator, not an instant")


def print_outcomes(results: list[UserResult], crowd: Crowd, report: InvariantReport) -> None:
    """What users were told, and what Redis and the database hold."""
    answers = Counter(r.answer for r in results)
    print(f"final answers\n{tally(answers)}")
    print(f"first answers of the issue route\n{tally(Counter(r.first for r in results))}")
    print(f"waiting room            {crowd.room_polls:,} polls, largest line seen "
          f"{crowd.largest_room:,}")
    print(f"coupons issued          {report.issued:,} of {report.initial_stock:,} "
          f"(database {report.persisted:,}, in flight {report.in_flight:,}, "
          f"compensated {report.compensated:,}, stock left {report.stock_left:,})")
    for check in report.checks:
        print(f"    {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.observed:,}")
    told = answers["COMPLETED"]
    print(f"invariants              {'ok' if report.ok else 'BROKEN'}; users told COMPLETED "
          f"{told:,} {'=' if told == report.persisted else '!='} coupons stored "
          f"{report.persisted:,}")


def print_costs(sampler: Sampler, crowd: Crowd, finished: float, lags: list[float],
                loads: tuple[float, float]) -> None:
    """Who used the CPU: on a shared machine a busy neighbour shows in the load average."""
    print(f"service                 {sampler.summary('service', crowd.opens_at, finished)}")
    print(f"generator               {sampler.summary('generator', crowd.opens_at, finished)}; "
          f"event-loop lag p99 {quantile(lags, 0.99) * 1000:.0f} ms, "
          f"max {max(lags, default=0) * 1000:.0f} ms")
    print(f"machine                 {os.cpu_count()} cores, load average (1 min) "
          f"{loads[0]:.1f} before the spike, {loads[1]:.1f} after")
    if quantile(lags, 0.99) > 0.1:
        print("verdict                 the generator's event loop was saturated (lag p99 over "
              "100 ms): it, not the service, set the pace of the presses")


def write_csv(path: str, results: list[UserResult]) -> None:
    """One row per user, for a closer look at the tail."""
    with open(path, "w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["user", "answer", "first", "sent_s", "first_s", "final_s"])
        for n, r in enumerate(results):
            rows.writerow([f"u{n:07d}", r.answer, r.first, f"{r.sent_s:.4f}",
                           f"{r.first_s:.4f}", f"{r.seconds:.4f}"])


def crowd_line(args: argparse.Namespace) -> str:
    if not args.max_in_flight or args.max_in_flight >= args.users:
        return (f"all {args.users:,} users in flight at once, at most {args.connections} "
                f"HTTP exchanges (connections) at a time")
    return (f"BOUNDED CROWD: at most {args.max_in_flight:,} users in flight; the others "
            f"press only as users finish, so the service never sees the whole crowd at "
            f"once and a late user's time-to-final includes waiting to press")


# --- main -----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--stock", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--db-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/couponsim_spike")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--poll-s", type=float, default=1.0,
                        help="waiting-room poll interval (the page polls every second)")
    parser.add_argument("--lead-s", type=float, default=5.0,
                        help="the event opens this long after it is defined")
    parser.add_argument("--early-s", type=float, default=0.0,
                        help="press this long before the opening (eager users, fast clocks): "
                             "the room's pre-queue takes them")
    parser.add_argument("--max-in-flight", type=int, default=0,
                        help="bound the crowd: users in flight at once (0: all of them)")
    parser.add_argument("--progress-s", type=float, default=5.0)
    parser.add_argument("--csv", help="write one row per user to this file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    launched = time.perf_counter()
    repository = Repository.from_url(args.db_url)
    driver = SyncDriver.from_url(args.redis_url, repository)
    driver.run(lifecycle.purge(COUPON, with_database=True))
    token = secrets.token_urlsafe(16)
    base = f"http://127.0.0.1:{args.port}"
    try:
        # with its worker: consumers persist, schedulers open the event
        with served(args.port, "--redis-url", args.redis_url, "--db-url", args.db_url,
                    env=os.environ | {"COUPONSIM_ADMIN_TOKEN": token}, ready="/health") as server:
            sampler = Sampler({"service": server.pid, "generator": os.getpid()})
            sampler.start()
            opens_at = define_event(base, token, args.stock, args.lead_s)
            print(f"spike: {args.users:,} users for {args.stock:,} coupons; one service "
                  f"process (uvicorn + worker), Redis {redact(args.redis_url)}, "
                  f"{args.db_url.split('@')[-1]}\n"
                  f"load: one asyncio generator (httpx), {crowd_line(args)}; the event opens "
                  f"{args.lead_s:g} s after it is defined\ncode: {code_version()}", flush=True)
            load_before = os.getloadavg()[0]
            results, crowd, lags = asyncio.run(run_crowd(base, opens_at, args))
            finished = time.perf_counter()
            loads = (load_before, os.getloadavg()[0])
            seen_by_service = service_view(base)
            report = settled_report(driver)
            sampler.stopped.set()
            print_timing(results, args)
            print(f"issue route, service side  {seen_by_service}")
            print_outcomes(results, crowd, report)
            print_costs(sampler, crowd, finished, lags, loads)
            if args.csv:
                write_csv(args.csv, results)
            print(f"wall time               {time.perf_counter() - launched:.1f} s from launch "
                  f"to this report")
    finally:
        repository.engine.dispose()
    return 0 if report.ok and not any(r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
