"""The status stream: the design's read-then-subscribe misses an update that the
hardened subscribe-then-read does not; reconnecting and disconnecting clients."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from couponsim.connection import connect, connect_async
from couponsim.consumers import drain
from couponsim.drivers.aio import AsyncDriver
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Command, Effect
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import IssueRequest, issue
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.service.config import ServiceConfig, StreamVariant
from couponsim.service.sse import DesignStream, HubStream, StatusHub, status_events

from .conftest import Backend
from .service_helpers import live_service, sse_events, status_path


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real_redis)])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, SyncDriver]]:
    """A sync driver on a fresh fake:// server or the flushed real test database, with
    SQLite, and one hardened request ``r1`` issued and still PROCESSING."""
    if request.param == "fake":
        url = f"fake://stream-{tmp_path.name}"
    else:
        backend: Backend = request.getfixturevalue("real_backend")
        url = backend.url
    repository = Repository.from_url(f"sqlite:///{tmp_path / 'stream.sqlite'}")
    driver = SyncDriver(connect(url), url, repository)
    driver.run(lifecycle.open_event(CouponEvent("c1", stock=5), Variant.HARDENED))
    driver.run(issue(IssueRequest("c1", "u1", "r1"), 1))
    yield url, driver
    repository.engine.dispose()


class ConsumerRightAfterTheRead(AsyncDriver):
    """A driver after whose first read of a request record the consumer stores the coupon
    and publishes COMPLETED, before the reader takes its next step: the update falls
    exactly between reading the status and whatever the stream does next."""

    def __init__(self, *args: Any, consumer: SyncDriver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumer, self.fired = consumer, False

    async def execute(self, effect: Effect) -> Any:
        result = await super().execute(effect)
        if isinstance(effect, Command) and effect.name == "HGETALL" and not self.fired:
            self.fired = True
            await asyncio.to_thread(drain, self.consumer, "c1")
        return result


def _states(events: list[dict[str, str]]) -> list[str]:
    return [json.loads(e["data"])["status"] if e["event"] == "status" else e["event"]
            for e in events]


@pytest.mark.parametrize("variant", list(StreamVariant))
def test_an_update_between_read_and_subscribe(system: tuple[str, SyncDriver],
                                              variant: StreamVariant) -> None:
    """The design's stream reads PROCESSING, then subscribes too late for COMPLETED and
    waits out its timeout; the hardened stream, registered before its read, gets it."""
    url, consumer = system

    async def watch() -> list[dict[str, str]]:
        client = await connect_async(url)
        driver = ConsumerRightAfterTheRead(client, url, consumer=consumer)
        hub = StatusHub(client)
        await hub.start()
        stream = (HubStream(driver, hub, "c1", "r1") if variant is StreamVariant.HARDENED
                  else DesignStream(driver, "c1", "r1"))
        try:
            current = await stream.open()
            timeout_s = 10.0 if variant is StreamVariant.HARDENED else 1.0
            return [event async for event in status_events(stream, current, timeout_s)]
        finally:
            await hub.close()
            await client.aclose()

    seen = _states(asyncio.run(watch()))
    if variant is StreamVariant.DESIGN:
        assert seen == ["PROCESSING", "timeout"]          # the final state was missed
    else:
        assert seen == ["PROCESSING", "COMPLETED"]


def _config(url: str, tmp_path: Path, stream: StreamVariant, **fields: Any) -> ServiceConfig:
    return ServiceConfig(redis_url=url, db_url=f"sqlite:///{tmp_path / 'stream.sqlite'}",
                         stream=stream, **fields)


async def _first_event_then_leave(url: str) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as client:
        async for event in sse_events(client, url):
            return event                       # leaving the block drops the connection
    raise AssertionError("no event")


@pytest.mark.parametrize("variant", list(StreamVariant))
def test_a_client_that_disconnects_leaves_no_subscription_behind(
        system: tuple[str, SyncDriver], tmp_path: Path, variant: StreamVariant) -> None:
    url, driver = system
    channel = CouponKeys("c1").channel
    with live_service(_config(url, tmp_path, variant), worker=False) as live:
        first = asyncio.run(_first_event_then_leave(
            live.url + status_path(live, "c1", "r1", "u1")))
        assert json.loads(first["data"])["status"] == "PROCESSING"
        for _ in range(200):                   # the server notices the disconnect soon
            subscribers = driver.client.pubsub_numsub(channel)[0][1]
            if live.app.state.hub.listening == 0 and subscribers == 0 and \
                    "couponsim_status_streams 0.0" in httpx.get(f"{live.url}/metrics").text:
                break
            asyncio.run(asyncio.sleep(0.05))
        else:
            raise AssertionError("a subscription outlived its client")


@pytest.mark.slow
def test_reconnecting_with_last_event_id_gets_what_it_missed(
        system: tuple[str, SyncDriver], tmp_path: Path) -> None:
    """A stream that timed out while PROCESSING; the client reconnects with the id it saw:
    it is not sent PROCESSING again, and once the coupon is stored it gets COMPLETED."""
    url, driver = system
    config = _config(url, tmp_path, StreamVariant.HARDENED, stream_timeout_s=0.3)
    async def read(live_url: str, last: str | None = None) -> list[dict[str, str]]:
        status = status_path(live, "c1", "r1", "u1")
        headers = {"Last-Event-ID": last} if last else None
        async with httpx.AsyncClient(base_url=live_url, timeout=10) as client:
            return [event async for event in sse_events(client, status, headers)]

    with live_service(config, worker=False) as live:
        first = asyncio.run(read(live.url))
        assert _states(first) == ["PROCESSING", "timeout"]
        assert first[0]["id"] == "PROCESSING"
        assert _states(asyncio.run(read(live.url, "PROCESSING"))) == ["timeout"]
        drain(driver, "c1")
        assert _states(asyncio.run(read(live.url, "PROCESSING"))) == ["COMPLETED"]
        unknown = httpx.get(f"{live.url}/api/v1/coupons/c1/status/nope")
        assert unknown.status_code == 404 and unknown.json()["code"] == "unknown-request"
        malformed = httpx.get(f"{live.url}/api/v1/coupons/c1/status/r%7B1%7D")
        assert malformed.status_code == 400
        assert live.app.state.hub.listening == 0       # refused streams left nothing behind


def test_the_design_stream_delivers_when_nothing_falls_in_its_gap(
        system: tuple[str, SyncDriver], tmp_path: Path) -> None:
    url, driver = system

    async def watch(live_url: str) -> list[str]:
        states = []
        async with httpx.AsyncClient(timeout=10) as client:
            async for event in sse_events(client, live_url + status_path(live, "c1", "r1", "u1")):
                states.append(json.loads(event["data"])["status"])
                if len(states) == 1:           # publish only once the subscription is there
                    while not driver.client.pubsub_numsub(CouponKeys("c1").channel)[0][1]:
                        await asyncio.sleep(0.01)
                    await asyncio.to_thread(drain, driver, "c1")
        return states

    with live_service(_config(url, tmp_path, StreamVariant.DESIGN), worker=False) as live:
        assert asyncio.run(watch(live.url)) == ["PROCESSING", "COMPLETED"]


@pytest.mark.real_redis
def test_the_hub_survives_a_lost_connection_and_streams_miss_nothing(
        real_backend: Backend, tmp_path: Path) -> None:
    """Redis drops the hub's connection (CLIENT KILL, as a restart would) and the coupon
    is stored while it is away: the hub subscribes again, the stream re-reads and ends
    COMPLETED."""
    url = real_backend.url
    repository = Repository.from_url(f"sqlite:///{tmp_path / 'lost.sqlite'}")
    consumer = SyncDriver(real_backend.client, url, repository)
    consumer.run(lifecycle.open_event(CouponEvent("c1", stock=5), Variant.HARDENED))
    consumer.run(issue(IssueRequest("c1", "u1", "r1"), 1))
    name = f"hub-{tmp_path.name}"[:40]

    async def watch() -> list[str]:
        client = await connect_async(url)
        hub_client = client.__class__.from_url(url, decode_responses=True, client_name=name)
        hub = StatusHub(hub_client, retry_s=0.2)
        await hub.start()
        stream = HubStream(AsyncDriver(client, url), hub, "c1", "r1")
        try:
            current = await stream.open()
            hub_ids = [c["id"] for c in await client.client_list() if c.get("name") == name]
            assert hub_ids
            for client_id in hub_ids:
                await client.client_kill_filter(_id=client_id)
            await asyncio.to_thread(drain, consumer, "c1")
            states = _states([e async for e in status_events(stream, current, 10.0)])
            again = [c["id"] for c in await client.client_list() if c.get("name") == name]
            assert again and not set(again) & set(hub_ids)       # it subscribed anew
            return states
        finally:
            await hub.close()
            await hub_client.aclose()
            await client.aclose()

    assert asyncio.run(watch()) == ["PROCESSING", "COMPLETED"]
    repository.engine.dispose()


def test_a_stream_hears_only_its_own_coupons_request(system: tuple[str, SyncDriver]) -> None:
    """The flows key request ids per coupon (the service's own ids are unique across
    coupons, but flows called directly may reuse one): the hub must not hand coupon c2's
    update of request r1 to the stream watching c1's r1."""
    url, driver = system
    driver.run(lifecycle.open_event(CouponEvent("c2", stock=5), Variant.HARDENED))
    driver.run(issue(IssueRequest("c2", "u2", "r1"), 1))

    async def watch() -> list[dict[str, str]]:
        client = await connect_async(url)
        hub = StatusHub(client)
        await hub.start()
        stream = HubStream(AsyncDriver(client, url), hub, "c1", "r1")
        try:
            current = await stream.open()
            await asyncio.to_thread(drain, driver, "c2")       # c2's r1 completes
            return [event async for event in status_events(stream, current, 1.0)]
        finally:
            await hub.close()
            await client.aclose()

    assert _states(asyncio.run(watch())) == ["PROCESSING", "timeout"]
