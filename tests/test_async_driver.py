"""The asyncio driver runs the same flows as the sync driver, on fakeredis.aioredis and
on a real Redis, with the repository called in a thread."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from couponsim.connection import connect, connect_async, resolve
from couponsim.drivers.aio import AsyncDriver
from couponsim.drivers.sync import wall_clock_ms
from couponsim.effects import Command
from couponsim.errors import RedisUnavailable, UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.consume import consume_batch, load_event
from couponsim.flows.gateway import Gateway, gateway_issue
from couponsim.flows.gateway import Path as GatewayPath
from couponsim.flows.issue import IssueOutcome, IssueRequest, issue
from couponsim.flows.status import RequestState, read_status
from couponsim.flows.waiting_room import join_room, room_status
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.verify import check_invariants

AsyncTest = Callable[[AsyncDriver], Awaitable[None]]


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real_redis)])
def redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh fake:// server per test, or the flushed real test database; ``private``:
    a redis-server of this test's own (local://), for counts of the whole server."""
    if request.param == "fake":
        yield f"fake://async-{tmp_path.name}"
        return
    url: str = (resolve(f"local://async-{tmp_path.name}"[:40]) if request.param == "private"
                else request.getfixturevalue("real_redis_url"))
    client = connect(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def run_async(redis_url: str, tmp_path: Path) -> Iterator[Callable[[AsyncTest], None]]:
    """Run a test coroutine on an AsyncDriver with a SQLite repository, in a fresh loop."""
    repository = Repository.from_url(f"sqlite:///{tmp_path / 'async.sqlite'}")

    def run(test: AsyncTest) -> None:
        async def main() -> None:
            client = await connect_async(redis_url)
            try:
                await test(AsyncDriver(client, redis_url, repository))
            finally:
                await client.aclose()
        asyncio.run(main())

    yield run
    repository.engine.dispose()


def test_issue_status_and_the_consumer_run_through_the_async_driver(
        run_async: Callable[[AsyncTest], None]) -> None:
    async def test(driver: AsyncDriver) -> None:
        await driver.run(lifecycle.open_event(CouponEvent("c1", stock=2), Variant.HARDENED))
        answers = [await driver.run(issue(IssueRequest("c1", user, f"r-{user}"), 10))
                   for user in ("u1", "u2", "u3")]
        assert [a.outcome for a in answers] == [IssueOutcome.ISSUED, IssueOutcome.ISSUED,
                                                 IssueOutcome.SOLD_OUT]
        event = await driver.run(load_event("c1"))                       # a DbCall in a thread
        report = await driver.run(consume_batch(event, "worker", 20))   # pipelines, scripts
        assert report.persisted == 2
        status = await driver.run(read_status("c1", "r-u1"))
        assert status is not None and status.state is RequestState.COMPLETED
        invariants = await driver.run(check_invariants("c1", with_database=True))
        assert invariants.ok and invariants.persisted == 2
    run_async(test)


def test_the_gateway_and_the_room_run_through_the_async_driver(
        run_async: Callable[[AsyncTest], None]) -> None:
    async def test(driver: AsyncDriver) -> None:
        await driver.run(lifecycle.warm_up(CouponEvent("c1", stock=5)))
        early = await driver.run(gateway_issue(Gateway(), IssueRequest("c1", "u1", "r1"), 7))
        assert early.path is GatewayPath.EARLY and early.room_state == "WAITING"
        await driver.run(join_room("c1", "u2", "r2", wall_clock_ms() + 60_000))  # later
        where = await driver.run(room_status("c1", "u2", wall_clock_ms()))  # MULTI/EXEC
        assert (where.state, where.position, where.size) == ("WAITING", 2, 2)
    run_async(test)


def test_a_failing_effect_is_thrown_into_the_flow(
        run_async: Callable[[AsyncTest], None]) -> None:
    async def test(driver: AsyncDriver) -> None:
        with pytest.raises(UnknownCoupon):
            await driver.run(issue(IssueRequest("nope", "u1", "r1"), 10))
    run_async(test)


@pytest.mark.slow
def test_a_redis_that_is_down_is_a_typed_error() -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
        try:
            with pytest.raises(RedisUnavailable):
                await AsyncDriver(client, "redis://127.0.0.1:1").run(read_status("c1", "r1"))
        finally:
            await client.aclose()
    asyncio.run(main())


@pytest.mark.parametrize(
    "redis_url", ["fake", pytest.param("private", marks=pytest.mark.real_redis)], indirect=True)
def test_coalescing_sends_one_pipeline_per_loop_turn_with_the_same_answers(
        run_async: Callable[[AsyncTest], None]) -> None:
    """Concurrent requests' single calls share a round trip; each caller still gets its
    own answer or its own error, and a script unknown to the server is loaded (SCRIPT
    FLUSH empties the whole server: a real one is this test's own)."""
    async def test(plain: AsyncDriver) -> None:
        driver = AsyncDriver(plain.client, plain.url, plain.repository, coalesce=True)
        await plain.run(lifecycle.open_event(CouponEvent("c1", stock=30), Variant.HARDENED))
        await plain.client.script_flush()              # the first batch meets NOSCRIPT
        answers = await asyncio.gather(*(
            driver.run(issue(IssueRequest("c1", f"u{n % 40}", f"r{n}"), 10))
            for n in range(50)))
        assert driver.round_trips <= 3, "50 requests, one pipeline for each loop turn"
        outcomes = [a.outcome for a in answers]
        assert outcomes.count(IssueOutcome.ISSUED) == 30
        assert outcomes.count(IssueOutcome.DUPLICATE) + outcomes.count(
            IssueOutcome.SOLD_OUT) == 20
        await plain.client.set("plain-string", "x")
        results = await asyncio.gather(
            driver.execute(Command("GET", ("plain-string",))),
            driver.execute(Command("HGETALL", ("plain-string",))),   # WRONGTYPE: only here
            driver.execute(Command("HGETALL", (CouponKeys("c1").info,))),
            return_exceptions=True)
        assert results[0] == "x" and isinstance(results[1], redis.ResponseError)
        assert isinstance(results[2], dict) and results[2]["stock"] == "30"
        invariants = await plain.run(check_invariants("c1"))
        assert invariants.ok and invariants.issued == 30
    run_async(test)


@pytest.mark.parametrize(
    "redis_url", ["fake", pytest.param("private", marks=pytest.mark.real_redis)], indirect=True)
def test_coalescing_sends_concurrent_issues_as_one_batched_script_call(
        run_async: Callable[[AsyncTest], None]) -> None:
    """A loop turn's issue requests for one coupon leave as one call of the batched
    script, and each caller gets the answer one call each in that order would give.
    On a real server INFO commandstats counts the calls; it counts every client's,
    so that server is a private one."""
    async def test(plain: AsyncDriver) -> None:
        driver = AsyncDriver(plain.client, plain.url, plain.repository, coalesce=True)
        await plain.run(lifecycle.open_event(CouponEvent("c1", stock=30), Variant.HARDENED))
        await plain.run(lifecycle.open_event(CouponEvent("c2", stock=5), Variant.HARDENED))
        real = not plain.url.startswith("fake://")
        if real:
            await plain.client.config_resetstat()
        requests = [IssueRequest(f"c{1 + n % 2}", f"u{n % 40}", f"r{n}") for n in range(50)]
        answers = await asyncio.gather(*(driver.run(issue(request, 10))
                                         for request in requests))
        assert driver.round_trips == 1 and driver.calls_sent == 2, "one call per coupon"
        if real:
            stats = await plain.client.info("commandstats")
            evalsha = stats["cmdstat_evalsha"]    # a fresh server answers NOSCRIPT first
            assert evalsha["calls"] - evalsha["failed_calls"] == 2, evalsha
        by_coupon = {coupon: [a.outcome for r, a in zip(requests, answers, strict=True)
                              if r.coupon_id == coupon] for coupon in ("c1", "c2")}
        assert by_coupon["c1"] == [IssueOutcome.ISSUED] * 20 + [IssueOutcome.DUPLICATE] * 5
        assert by_coupon["c2"] == [IssueOutcome.ISSUED] * 5 + [IssueOutcome.SOLD_OUT] * 15 \
            + [IssueOutcome.DUPLICATE] * 5
        for coupon, issued in (("c1", 20), ("c2", 5)):
            invariants = await plain.run(check_invariants(coupon))
            assert invariants.ok and invariants.issued == issued
    run_async(test)


def test_a_turn_of_presses_through_the_gateway_is_one_script_call(
        run_async: Callable[[AsyncTest], None]) -> None:
    """The gateway's "anyone waiting in the room?" is asked by the issue script itself:
    a loop turn's presses cost one EVALSHA and nothing else; with someone waiting, that
    call answers them all WAITERS and one more joins them to the line, behind the
    early bird, without taking stock."""
    async def test(plain: AsyncDriver) -> None:
        driver = AsyncDriver(plain.client, plain.url, plain.repository, coalesce=True)
        await plain.run(lifecycle.open_event(CouponEvent("c1", stock=30), Variant.HARDENED))
        gateway = Gateway()
        for n, expected, calls in ((0, GatewayPath.DIRECT, 1),
                                   (1, GatewayPath.BEHIND_WAITERS, 2)):
            if n:
                await plain.client.zadd(CouponKeys("c1").waiting, {"early-bird": 1})
            before = (driver.round_trips, driver.calls_sent)
            answers = await asyncio.gather(*(
                driver.run(gateway_issue(gateway, IssueRequest("c1", f"u{n}-{k}", f"r{n}-{k}")))
                for k in range(20)))
            assert (driver.round_trips - before[0], driver.calls_sent - before[1]) == (calls,
                                                                                      calls)
            assert {a.path for a in answers} == {expected}
        invariants = await plain.run(check_invariants("c1"))
        assert invariants.ok and invariants.issued == 20
    run_async(test)
