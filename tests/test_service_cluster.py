"""The service on a Redis Cluster (``redis+cluster://``, issue #11): the asyncio driver's
scripts, pipelines and coalesced batches routed by slot, the status hub listening on one
node (a PUBLISH reaches every node), and the live service with its worker, judged by the
invariant checker. On the session's 3-master, 3-replica cluster (conftest)."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from couponsim.connection import close_async, connect, connect_async, pubsub_client
from couponsim.drivers.aio import AsyncDriver
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.consume import consume_batch, load_event
from couponsim.flows.gateway import Gateway, gateway_issue
from couponsim.flows.gateway import Path as GatewayPath
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue
from couponsim.flows.status import RequestState, read_status
from couponsim.flows.waiting_room import join_room, room_status
from couponsim.keys import STATUS_CHANNEL_PREFIX, CouponKeys
from couponsim.local_redis import LocalCluster
from couponsim.persistence.repository import Repository
from couponsim.service.config import ServiceConfig
from couponsim.verify import check_invariants

from .service_helpers import Live, crowd_clicks, final_status, live_service, start_now, status_path
from .test_service_live import ADMIN, click, define, until_open

pytestmark = pytest.mark.redis_cluster

EVERY_EVENT = "coupon:info:{*"
"""The pattern lifecycle.event_ids scans: it has no hash tag, so it matches on every shard."""


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster, flushed before and after (every key this file writes)."""
    redis_cluster.flushall()
    yield redis_cluster
    redis_cluster.flushall()


def on_other_shards(cluster: LocalCluster, candidates: int = 40) -> tuple[str, ...]:
    """Coupon ids whose keys live on a master other than the one serving EVERY_EVENT's
    slot: one per such master."""
    first = cluster.master_of(EVERY_EVENT).port
    chosen: dict[int, str] = {}
    for n in range(candidates):
        port = cluster.master_of(CouponKeys(f"k{n}").info).port
        if port != first:
            chosen.setdefault(port, f"k{n}")
    return tuple(chosen.values())


def test_the_async_driver_runs_the_flows_on_a_cluster(cluster: LocalCluster,
                                                      tmp_path: Path) -> None:
    """Scripts, MULTI/EXEC on the slot's node, plain pipelines (the consumer's), a
    coalesced batch spanning shards that meets NOSCRIPT, and SCAN over every shard."""
    repository = Repository.from_url(f"sqlite:///{tmp_path / 'async.sqlite'}")
    coupons = ("c1", *on_other_shards(cluster))   # c1 and one coupon per other shard

    async def main() -> None:
        client = await connect_async(cluster.url)
        try:
            driver = AsyncDriver(client, cluster.url, repository)
            for coupon in coupons:
                await driver.run(lifecycle.open_event(CouponEvent(coupon, stock=2),
                                                      Variant.HARDENED))
            answers = [await driver.run(issue(IssueRequest("c1", user, f"r-{user}"), 10))
                       for user in ("u1", "u2", "u3")]
            assert [a.outcome for a in answers] == [IssueOutcome.ISSUED, IssueOutcome.ISSUED,
                                                     IssueOutcome.SOLD_OUT]
            event = await driver.run(load_event("c1"))
            assert (await driver.run(consume_batch(event, "worker", 20))).persisted == 2
            status = await driver.run(read_status("c1", "r-u1"))
            assert status is not None and status.state is RequestState.COMPLETED
            report = await driver.run(check_invariants("c1", with_database=True))
            assert report.ok and report.persisted == 2, report.checks

            # The gateway and the room: a MULTI/EXEC with parsed replies, on c1's node.
            await driver.run(lifecycle.warm_up(CouponEvent("room1", stock=5)))
            early = await driver.run(gateway_issue(Gateway(), IssueRequest("room1", "u1", "r1"),
                                                   7))
            assert early.path is GatewayPath.EARLY and early.room_state == "WAITING"
            await driver.run(join_room("room1", "u2", "r2", wall_clock_ms() + 60_000))
            where = await driver.run(room_status("room1", "u2", wall_clock_ms()))
            assert (where.state, where.position, where.size) == ("WAITING", 2, 2)

            # Every event, whichever shard holds it (the metrics route's list).
            assert await driver.run(lifecycle.event_ids()) == sorted({*coupons, "room1"})

            # Coalesced: concurrent calls on every shard share one round trip per node, and
            # a script the nodes no longer have (flushed) is loaded and sent again.
            await client.script_flush()
            coalescing = AsyncDriver(client, cluster.url, repository, coalesce=True)
            answers = await asyncio.gather(*(
                coalescing.run(issue(IssueRequest(coupon, "u9", f"r9-{coupon}"), 10))
                for coupon in coupons[1:]))
            assert [a.outcome for a in answers] == [IssueOutcome.ISSUED] * len(coupons[1:])
            assert coalescing.round_trips == 1
        finally:
            await close_async(client)
    try:
        asyncio.run(main())
    finally:
        repository.engine.dispose()


@pytest.mark.slow
def test_pubsub_client_is_one_node_and_hears_every_shards_publish(
        cluster: LocalCluster) -> None:
    async def main() -> None:
        client = await connect_async(cluster.url)
        try:
            listener = pubsub_client(client)
            assert listener is pubsub_client(client)   # one per cluster client
            pubsub = listener.pubsub()
            await pubsub.psubscribe(f"{STATUS_CHANNEL_PREFIX}*")
            channels = [CouponKeys(c).channel for c in ("c1", *on_other_shards(cluster))]
            for channel in channels:
                await client.publish(channel, "hello")
            heard: list[str] = []
            for _ in range(50):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    heard.append(message["channel"])
                if len(heard) == len(channels):
                    break
            assert sorted(heard) == sorted(channels)
            await pubsub.aclose()
        finally:
            await close_async(client)
    asyncio.run(main())


def test_the_sync_driver_lists_events_on_every_shard(cluster: LocalCluster) -> None:
    """event_ids scans coupon:info:{*, a pattern with no hash tag: the worker must see
    every shard's events (it saw one shard's only: the schedulers never opened the
    others' events and the consumers never drained them)."""
    driver = SyncDriver(connect(cluster.url), cluster.url)
    coupons = ("c1", *on_other_shards(cluster))
    for coupon in coupons:
        driver.run(lifecycle.warm_up(CouponEvent(coupon, stock=1)))
    assert driver.run(lifecycle.event_ids()) == sorted(coupons)


async def until_in_room(redis_url: str, coupon_id: str, users: int) -> None:
    """Wait (bounded) until ``users`` users wait in the coupon's room."""
    client = connect(redis_url)
    try:
        for _ in range(400):
            if client.zcard(CouponKeys(coupon_id).waiting) >= users:
                return
            await asyncio.sleep(0.05)
    finally:
        client.close()
    raise AssertionError("the early clicks never reached the room")


@pytest.mark.slow
def test_the_live_service_on_a_cluster_issues_streams_and_keeps_the_invariants(
        cluster: LocalCluster, tmp_path: Path) -> None:
    """A crowd of httpx clients (double clicks with a new key or the same key) on the
    service and its worker, on the cluster: early clicks wait in the room (read through
    the room route) until the event opens; every accepted request's status stream ends
    COMPLETED; Redis and the database agree, one coupon per user, the stock gone."""
    config = ServiceConfig(redis_url=cluster.url, db_url=f"sqlite:///{tmp_path / 's.sqlite'}",
                           admin_token=ADMIN, stream_timeout_s=30)
    coupon, stock = on_other_shards(cluster)[0], 20   # not the pattern's own shard
    clicks = crowd_clicks(50, seed=11)
    early = clicks[:10]                               # before the event opens: the room

    async def scenario(live: Live) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=live.url, timeout=30, limits=limits) as client:
            # An hour ahead, started once the early clicks wait in the room (start_now).
            await define(client, coupon, stock, starts_at_ms=wall_clock_ms() + 3_600_000)
            waiting = [asyncio.create_task(click(client, coupon, user, key))
                       for user, key in early]
            await until_in_room(config.redis_url, coupon, len({u for u, _ in early}))
            # Before the start the worker admits no one: the room says WAITING.
            room = (await client.get(f"/api/v1/coupons/{coupon}/waiting-room",
                                     headers={"X-User-ID": early[0][0]})).json()
            start_now(config.redis_url, coupon)
            await until_open(config.redis_url, coupon)
            results = await asyncio.gather(*waiting, *(click(client, coupon, user, key)
                                                       for user, key in clicks[10:]))
            # A status stream read again after the end: the final state at once.
            done = next(r for r in results if r["final"] == "COMPLETED")
            again = await final_status(client, status_path(live, coupon, done["request"],
                                                           done["user"]))
            assert again["status"] == "COMPLETED"
            return list(results), room

    with live_service(config, worker=True) as live:
        results, room = asyncio.run(scenario(live))

    assert room["state"] == "WAITING" and room["queuePosition"] >= 1, room
    assert len(results) == len(clicks)
    assert {r["final"] for r in results} <= {"COMPLETED", "duplicate", "sold-out",
                                             "SOLD_OUT", "DUPLICATE"}
    completed = [r for r in results if r["final"] == "COMPLETED"]
    accepted = {r["request"] for r in completed}       # a replayed key is one request
    winners = {r["user"] for r in completed}
    assert len(winners) == len(accepted) == stock       # one coupon per user, stock gone
    repository = Repository.from_url(config.db_url)
    client = connect(config.redis_url)
    try:
        report = SyncDriver(client, config.redis_url, repository).run(
            check_invariants(coupon, with_database=True))
    finally:
        client.close()
        repository.engine.dispose()
    assert report.ok, report.checks
    assert (report.persisted, report.stock_left, report.in_flight) == (len(accepted), 0, 0)
