"""What N open status streams cost when M status updates arrive: the design's stream
(one pub/sub connection per stream, subscribed to the coupon's shared channel and
filtering by request id) against the hardened one (one subscriber per process,
fanning out by request id). Issue #10: the design's N streams each receive all M
updates, N x M messages; the hub receives M.

For each variant the service runs in a subprocess (``couponsim serve --no-worker
--stream VARIANT``, one uvicorn worker), its Redis pool raised to N + 100
connections (``max_connections`` in its URL): redis-py 8's asyncio pool holds 100,
and the design, one connection per open stream, refuses the 100th stream (503) at
the default, leaving one connection to every other route. N requests are issued
straight through the issue script on an event with a large stock; N SSE streams (plain HTTP/1.1,
one connection each) open, one per request, and the benchmark waits until every one
has its first event (PROCESSING) and Redis shows the subscriptions in place, so
the design's read-then-subscribe race cannot lose an update here. Then the finals
of M requests are published in one pipeline, as the consumer's finalize script
writes them (status hash COMPLETED, then ``RequestStatus.to_message`` on the
coupon's channel): the burst of a spike. Measured:

- pub/sub connections: the service's own connections in ``CLIENT LIST TYPE pubsub``
  (matched by port; ``PUBSUB NUMSUB`` / ``NUMPAT`` are shown beside them);
- messages Redis delivered to the service: the sum of PUBLISH's answers (the
  subscribers Redis pushed each message to, counted by Redis), and, as a
  cross-check, the growth of INFO's ``total_net_output_bytes`` (this benchmark's
  own replies subtracted) divided by the size of one pushed message. Pub/sub
  ignores database numbers: other clients of the same server subscribed to the
  channel or a matching pattern (another service's hub on another database) are
  counted by a probe message and their share taken off both ("others": by
  channel + by pattern). Redis 7.0 has no per-client byte counter and the byte
  total is server-wide, so on a busy server the byte figure runs high;
- the service process's CPU seconds from the first publish until every stream
  has had its final, plus 0.3 s for the service to close them (psutil), and this
  process's (the streams' client, the publisher, the sampler);
- the time from the first publish until half, and all, of the streams had their
  final event;
- the largest pub/sub output buffer (``omem``) Redis held for the service while
  delivering, against the pubsub client-output-buffer-limit (default 32mb hard,
  8mb soft for 60 s: past it Redis drops the connection and its updates).

The load generator shares the machine's cores with the service and Redis.

    python benchmarks/status_fanout.py [--redis-url redis://127.0.0.1:6379/14]
                                       [--streams 500] [--updates N]
                                       [--variants design hardened] [--wait 120]
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import psutil  # type: ignore[import-untyped]
import redis

from couponsim.codes import SIMULATION_CODES
from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue
from couponsim.flows.status import RequestState, RequestStatus
from couponsim.keys import CouponKeys
from couponsim.processes import free_port
from couponsim.service.config import SECRET_ENV
from couponsim.service.keyed import Keyed, status_location
from couponsim.service.sse import STATUS_CHANNELS
from live_service import served

COUPON = "bench-fanout"
OPENING = 100
"""Streams being opened at once: a connect storm of thousands would measure the
listen backlog, not the fan-out."""
SAMPLE_S = 0.2
"""How often CLIENT LIST is read while updates are delivered (its replies are
subtracted from the byte count)."""
SETTLE_S = 0.3
"""After the last stream has closed, the service still unsubscribes (the design) and
cleans up; its CPU is read this much later."""


@dataclass
class Figures:
    """One variant's row of the table."""

    variant: str
    streams: int
    updates: int
    others: tuple[int, int] = (0, 0)
    """Other clients of this Redis reached by each message: by channel, by pattern."""
    connections: int = 0
    numsub: int = 0
    numpat: int = 0
    delivered: int = 0
    """Sum of PUBLISH's answers (messages Redis pushed), less the other clients' share."""
    delivered_by_bytes: float = 0.0
    max_omem: int = 0
    cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    """This process's: the streams' client, the publisher and the sampler."""
    to_all_final_s: float = float("nan")
    to_half_final_s: float = float("nan")
    finals: int = 0


@dataclass
class Tally:
    """What the watching streams have seen, shared by their tasks."""

    expected: int
    opened: int = 0
    all_opened: asyncio.Event = field(default_factory=asyncio.Event)
    final_at: list[float] = field(default_factory=list)

    def first_event(self) -> None:
        self.opened += 1
        if self.opened == self.expected:
            self.all_opened.set()


def _raise_file_limit() -> None:
    """Each stream is a socket here and one or two in the service (which inherits the
    limit): 1,000 streams outgrow a default of 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _issue_requests(driver: SyncDriver, count: int) -> list[str]:
    """``count`` accepted requests of distinct users, in one pipeline per round trip.

    Fixed-width ids make every status message the same size, so bytes convert to
    messages exactly.
    """
    requests = [IssueRequest(COUPON, f"u{i:07d}", f"r{i:07d}") for i in range(count)]
    now_ms = int(time.time() * 1000)
    results = driver.run_batch([issue(request, now_ms) for request in requests])
    refused = [r for r in results if isinstance(r, Exception) or r.outcome != IssueOutcome.ISSUED]
    if refused:
        raise RuntimeError(f"{len(refused)} requests were not issued, e.g. {refused[0]!r}")
    return [request.request_id for request in requests]


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _service_ports(pid: int, redis_port: int) -> set[int]:
    """The local ports of the service's connections to Redis: how its clients are
    told apart from everyone else's in CLIENT LIST."""
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == redis_port}


def _pubsub_clients(admin: redis.Redis, ports: set[int]) -> tuple[list[dict[str, str]], int]:
    """The service's pub/sub connections as Redis lists them, and the reply's size in
    bytes (it is output of Redis too)."""
    raw: bytes = admin.execute_command(  # type: ignore[no-untyped-call]
        "CLIENT LIST TYPE pubsub", NEVER_DECODE=True)  # as one word: no reply parser
    clients = []
    for line in raw.decode().splitlines():
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        if int(fields["addr"].rsplit(":", 1)[1]) in ports:
            clients.append(fields)
    return clients, len(raw) + len(f"${len(raw)}\r\n\r\n")


def _net_out(admin: redis.Redis) -> tuple[int, int]:
    """INFO's total_net_output_bytes, and the size of the reply that told it (which
    the next reading counts)."""
    raw: bytes = admin.execute_command(  # type: ignore[no-untyped-call]
        "INFO stats", NEVER_DECODE=True)  # as one word: no reply parser, the raw size
    found = re.search(rb"total_net_output_bytes:(\d+)", raw)
    assert found is not None, "INFO stats without total_net_output_bytes"
    return int(found.group(1)), len(raw) + len(f"${len(raw)}\r\n\r\n")


def _other_subscribers(admin: redis.Redis, channel: str, ours: list[dict[str, str]]
                       ) -> tuple[int, int]:
    """Who else on this Redis receives the coupon's status messages: subscribers of the
    channel, and of patterns matching it. Pub/sub ignores the database number, so
    another service on any database of the same server counts. Redis tells by the
    answer to a probe message (which every status reader ignores), less the
    service's own subscriptions (``ours``, from CLIENT LIST)."""
    by_channel = int(admin.pubsub_numsub(channel)[0][1]) - sum(int(c["sub"]) > 0 for c in ours)
    reached = int(admin.publish(channel, "status_fanout probe"))
    return by_channel, reached - len(ours) - by_channel


def _bulk(text: str) -> int:
    return len(f"${len(text.encode())}\r\n{text}\r\n")


def _pushed_bytes(by_pattern: bool, channel: str, payload: str) -> int:
    """Bytes of one status message as Redis pushes it: ``message`` to a channel's
    subscribers (the design's streams), ``pmessage`` with the pattern to a pattern's
    (the hub). RESP2 ``*`` and RESP3 ``>`` headers are the same size."""
    if not by_pattern:
        return len("*3\r\n") + _bulk("message") + _bulk(channel) + _bulk(payload)
    return (len("*4\r\n") + _bulk("pmessage") + _bulk(STATUS_CHANNELS) + _bulk(channel)
            + _bulk(payload))


SECRET = secrets.token_hex(32)
"""The service's secret, handed to it, so that each watcher can hold its status proof."""
KEYED = Keyed(SECRET.encode(), proof_ttl_s=3600)


def _status_path(request_id: str) -> str:
    """Request r0000042 is user u0000042's (_issue_requests)."""
    return status_location(request_id, KEYED.proof(request_id, "u" + request_id[1:], COUPON))


def _final(request_id: str) -> RequestStatus:
    return RequestStatus(request_id, RequestState.COMPLETED,
                         SIMULATION_CODES.code(COUPON, request_id))


async def _watch(port: int, request_id: str, opening: asyncio.Semaphore,
                 tally: Tally) -> None:
    """One user's stream: count its first event, note when its final one came.

    Plain HTTP/1.1 on a socket: with httpx, this process spent more CPU per final
    event than the hub's service did, and on 2 shared cores that delayed the finals
    it is here to time. The events are found by their ``data:`` lines, whatever the
    chunk framing around them.
    """
    await opening.acquire()
    released = False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {_status_path(request_id)} HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
            answer = await reader.readline()
            if answer.split()[1:2] != [b"200"]:
                raise RuntimeError(f"{request_id}: {answer.decode().strip()}")
            async for line in reader:
                if not line.startswith(b"data:"):
                    continue
                if json.loads(line[5:])["status"] != RequestState.PROCESSING:
                    tally.final_at.append(time.perf_counter())
                    return
                if not released:
                    opening.release()
                    released = True
                    tally.first_event()
        finally:
            writer.close()
    finally:
        if not released:
            opening.release()


def _publish(driver: SyncDriver, request_ids: list[str]) -> tuple[int, int]:
    """The finals, as finalize.lua writes them: status hash, then the message.

    Returns the messages Redis delivered (sum of PUBLISH's answers) and the bytes of
    the pipeline's replies (they count in Redis's output bytes, and are not fan-out).
    """
    keys = CouponKeys(COUPON)
    pipe = driver.client.pipeline(transaction=False)
    for request_id in request_ids:
        status = _final(request_id)
        pipe.hset(keys.request(request_id), mapping={"status": status.state.value,
                                                      "code": status.code})
        pipe.publish(keys.channel, status.to_message())
    replies = pipe.execute()
    return sum(replies[1::2]), sum(len(f":{reply}\r\n") for reply in replies)


async def _sample(admin: redis.Redis, ports: set[int], figures: Figures,
                  stop: asyncio.Event) -> int:
    """The largest output buffer of the service's pub/sub connections while updates
    are delivered; returns the bytes CLIENT LIST itself made Redis send."""
    sent = 0
    while not stop.is_set():
        clients, size = await asyncio.to_thread(_pubsub_clients, admin, ports)
        sent += size
        figures.max_omem = max([figures.max_omem, *(int(c["omem"]) for c in clients)])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)
    return sent


async def _measure(variant: str, pid: int, port: int, driver: SyncDriver, admin: redis.Redis,
                   request_ids: list[str], updates: int, wait_s: float) -> Figures:
    """Open every stream, count the service's subscriptions, then deliver the finals."""
    figures = Figures(variant, len(request_ids), updates)
    tally = Tally(len(request_ids))
    opening = asyncio.Semaphore(OPENING)
    watchers = [asyncio.create_task(_watch(port, r, opening, tally)) for r in request_ids]
    try:
        await _until_opened(tally, watchers, wait_s)
        channel = CouponKeys(COUPON).channel
        ports, figures.connections = await _until_subscribed(
            admin, pid, variant, len(request_ids), wait_s)
        figures.numsub = int(admin.pubsub_numsub(channel)[0][1])
        figures.numpat = int(admin.pubsub_numpat())
        await _deliver(figures, tally, pid, driver, admin, ports, request_ids,
                       watchers[:updates], wait_s)
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return figures


async def _deliver(figures: Figures, tally: Tally, pid: int, driver: SyncDriver,
                   admin: redis.Redis, ports: set[int], request_ids: list[str],
                   finishing: list[asyncio.Task[None]], wait_s: float) -> None:
    """Publish the finals of the first ``len(finishing)`` requests and wait until their
    streams have closed; fill in what Redis and the service spent on them."""
    channel = CouponKeys(COUPON).channel
    figures.others = _other_subscribers(admin, channel, _pubsub_clients(admin, ports)[0])
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(admin, ports, figures, stop))
    (out_before, info_bytes), cpu_before = _net_out(admin), _cpu_s(pid)
    client_before = time.process_time()
    started = time.perf_counter()
    reached, reply_bytes = await asyncio.to_thread(
        _publish, driver, request_ids[:len(finishing)])
    done, _ = await asyncio.wait(finishing, timeout=wait_s)
    await asyncio.sleep(SETTLE_S)
    figures.cpu_s = _cpu_s(pid) - cpu_before
    figures.client_cpu_s = time.process_time() - client_before
    stop.set()
    sampled_bytes = await sampler
    out_bytes = _net_out(admin)[0] - out_before - info_bytes - reply_bytes - sampled_bytes
    if _other_subscribers(admin, channel, _pubsub_clients(admin, ports)[0]) != figures.others:
        print(f"  {figures.variant}: other subscribers came or went while delivering: "
              "the figures less their share are approximate")
    figures.finals = len(tally.final_at)
    if tally.final_at:
        figures.to_all_final_s = max(tally.final_at) - started
        figures.to_half_final_s = statistics.median(tally.final_at) - started
    _count_delivered(figures, reached, out_bytes, _final(request_ids[0]).to_message())
    if len(done) < len(finishing):
        print(f"  {figures.variant}: {len(finishing) - len(done)} streams had no final "
              f"within {wait_s:g} s")


def _count_delivered(figures: Figures, reached: int, out_bytes: int, payload: str) -> None:
    """The service's share of what Redis pushed: by PUBLISH's answers and by bytes,
    the other subscribers' share taken off."""
    channel = CouponKeys(COUPON).channel
    by_channel, by_pattern = figures.others
    figures.delivered = reached - (by_channel + by_pattern) * figures.updates
    out_bytes -= figures.updates * (by_channel * _pushed_bytes(False, channel, payload)
                                    + by_pattern * _pushed_bytes(True, channel, payload))
    figures.delivered_by_bytes = out_bytes / _pushed_bytes(figures.variant == "hardened",
                                                           channel, payload)


async def _until_opened(tally: Tally, watchers: list[asyncio.Task[None]], wait_s: float) -> None:
    """Until every stream has its first event; a stream that failed ends the run."""
    opened = asyncio.create_task(tally.all_opened.wait())
    done, _ = await asyncio.wait([opened, *watchers], timeout=wait_s,
                                 return_when=asyncio.FIRST_COMPLETED)
    if opened not in done:
        opened.cancel()
        for task in done:
            task.result()  # raises what went wrong
        raise RuntimeError(f"{tally.opened} of {tally.expected} streams opened in {wait_s:g} s")


async def _until_subscribed(admin: redis.Redis, pid: int, variant: str, streams: int,
                            wait_s: float) -> tuple[set[int], int]:
    """A design stream sends its first event before Redis has processed its SUBSCRIBE:
    wait until the service's subscriptions are all in place (one per stream, or the
    hub's pattern), so no update is missed by that race. Returns the service's ports
    and its pub/sub connections."""
    redis_port = int(admin.connection_pool.connection_kwargs["port"])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        ports = _service_ports(pid, redis_port)
        clients = _pubsub_clients(admin, ports)[0]
        kind = "sub" if variant == "design" else "psub"
        if sum(int(c[kind]) > 0 for c in clients) >= (streams if variant == "design" else 1):
            return ports, len(clients)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{variant}: the subscriptions were not in place after {wait_s:g} s")


def _with_pool(url: str, size: int) -> str:
    """The service's Redis URL with its connection pool's size (0: redis-py's default)."""
    if not size:
        return url
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, f"max_connections={size}"]))
    return urlunsplit(parts._replace(query=query))


def _run_variant(variant: str, args: argparse.Namespace, driver: SyncDriver,
                 admin: redis.Redis, scratch: str) -> Figures:
    driver.run(lifecycle.purge(COUPON))
    driver.run(lifecycle.open_event(CouponEvent(COUPON, stock=10**9), Variant.HARDENED))
    request_ids = _issue_requests(driver, args.streams)
    try:
        with served(args.port, "--no-worker", "--stream", variant,
                    "--redis-url", _with_pool(args.redis_url, args.pool),
                    "--db-url", f"sqlite:///{scratch}/{variant}.sqlite",
                    env=os.environ | {SECRET_ENV: SECRET}) as server:
            return asyncio.run(_measure(variant, server.pid, args.port, driver, admin,
                                        request_ids, args.updates, args.wait))
    finally:
        driver.run(lifecycle.purge(COUPON))


def _print_table(rows: list[Figures]) -> None:
    print(f"{'variant':<9} {'N':>6} {'M':>6} {'pubsub conns':>12} {'NUMSUB':>6} {'NUMPAT':>6} "
          f"{'others':>6} "
          f"{'delivered (PUBLISH)':>19} {'delivered (bytes)':>17} {'max omem':>10} "
          f"{'CPU s':>6} {'client CPU s':>12} {'to half final':>13} {'to all final':>12} "
          f"{'finals':>6}")
    for row in rows:
        print(f"{row.variant:<9} {row.streams:>6,} {row.updates:>6,} {row.connections:>12,} "
              f"{row.numsub:>6,} {row.numpat:>6,} {'+'.join(map(str, row.others)):>6} "
              f"{row.delivered:>19,} "
              f"{row.delivered_by_bytes:>17,.0f} {row.max_omem:>10,} {row.cpu_s:>6.2f} "
              f"{row.client_cpu_s:>12.2f} {row.to_half_final_s:>11.3f} s "
              f"{row.to_all_final_s:>10.3f} s {row.finals:>6,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--streams", type=int, default=500, help="N: open status streams")
    parser.add_argument("--updates", type=int, default=None,
                        help="M: finals published, of the first M requests (default N)")
    parser.add_argument("--variants", nargs="+", choices=["design", "hardened"],
                        default=["design", "hardened"])
    parser.add_argument("--port", type=int, default=0, help="the service's (default: a free one)")
    parser.add_argument("--pool", type=int, default=None,
                        help="the service's Redis connection pool size (default N + 100; 0 "
                             "keeps redis-py's, 100 in redis-py 8, which the design's one "
                             "connection per stream exhausts at about 99 streams)")
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds to wait for the streams to open, and for the finals")
    args = parser.parse_args()
    args.updates = args.streams if args.updates is None else args.updates
    args.port = args.port or free_port()
    args.pool = args.streams + 100 if args.pool is None else args.pool
    if not 0 < args.updates <= args.streams:
        parser.error("--updates must be between 1 and --streams")
    if urlsplit(args.redis_url).scheme not in ("redis", "rediss"):
        parser.error("a real Redis over TCP is needed: its counters are read, its clients "
                     "told apart by port")
    _raise_file_limit()
    driver = SyncDriver.from_url(args.redis_url)
    admin = redis.Redis.from_url(args.redis_url, decode_responses=True)
    with tempfile.TemporaryDirectory() as scratch:
        rows = [_run_variant(variant, args, driver, admin, scratch) for variant in args.variants]
    limits = admin.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    print(f"one uvicorn worker, Redis {args.redis_url}, service pool "
          f"{args.pool or 'redis-py default'}, output buffer limits: {limits}")
    _print_table(rows)
    n, m = args.streams, args.updates
    print(f"expected: design N x M = {n * m:,} messages on N = {n:,} connections; "
          f"hardened M = {m:,} messages on 1 connection")


if __name__ == "__main__":
    main()
