"""A Redis restart under the live service (issue #10): the service's connections
recover by themselves and no accepted request is lost.

The Redis is the test's own (AOF, fsync on every write), stopped by its pid
(SIGTERM) and started again on the same port and directory, so it reloads what
it acknowledged. The consumer's writes are held back by a real database lock
the test takes, so the requests accepted before the restart are still
PROCESSING while Redis is away: their status streams stay open across it.
Judged on what Redis and the database hold afterwards, never on counters.
"""

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import Connection, create_engine, text

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.flows.gateway import Gateway
from couponsim.keys import CouponKeys
from couponsim.local_redis import LocalRedisError, RedisServer, local_server, redis_server_path
from couponsim.persistence.repository import Repository
from couponsim.resilience.time_limiter import TimeLimiter
from couponsim.service.config import ServiceConfig
from couponsim.service.problem import PROBLEM_JSON
from couponsim.verify import check_invariants

from .conftest import _missing
from .service_helpers import Live, follow, live_service, sse_events

pytestmark = pytest.mark.redis_cluster     # needs redis-server on PATH, as test_failover

T = TypeVar("T")

ADMIN = "admin-secret"
COUPON = "restart"
STOCK = 200
"""More than every user together: each accepted request must end as a coupon."""
WATCHED = 6
"""Requests accepted before the restart whose status streams stay open across it."""
STREAM_TIMEOUT_S = 30.0
"""A bound: a stream that missed its update ends with a timeout event (and fails)."""
POLLS = 400
"""Bounded polling, 50 ms apart: 20 s at most."""


@pytest.fixture(autouse=True)
def _needs_redis_server() -> None:
    if redis_server_path() is None:
        _missing("redis-server", "COUPONSIM_REQUIRE_REDIS", LocalRedisError("not on PATH"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, AOF fsynced on every write: all it answered
    before a SIGTERM it still holds after a start on the same directory."""
    with local_server(tmp_path / "redis", "--appendonly", "yes",
                      "--appendfsync", "always") as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file of this test, or the PostgreSQL test database with fresh tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'restart.sqlite'}"
    request.getfixturevalue("postgres_repository")
    url: str = request.getfixturevalue("postgres_url")
    return url


def _config(redis_server: RedisServer, db_url: str) -> ServiceConfig:
    return ServiceConfig(redis_url=redis_server.url, db_url=db_url, admin_token=ADMIN,
                         stream_timeout_s=STREAM_TIMEOUT_S)


class WritesHeld:
    """The consumer's database writes wait until :meth:`release`: a real lock taken by
    the test (SQLite's write lock; on PostgreSQL the table the consumer writes first)."""

    def __init__(self, db_url: str) -> None:
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: Connection | None = None
        if db_url.startswith("sqlite:///"):
            self._sqlite = sqlite3.connect(db_url.removeprefix("sqlite:///"),
                                           isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._postgres = create_engine(db_url).connect()
            self._postgres.execute(text("LOCK TABLE issue_decisions IN EXCLUSIVE MODE"))

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._postgres is not None:
            self._postgres.rollback()
            self._postgres.close()
            self._postgres.engine.dispose()
            self._postgres = None


def patient(live: Live) -> Live:
    """A time limiter past the test's own bounds. This file is about a restart: on a
    loaded machine a press over the default 1 s budget goes to the room (QUEUED), and
    the status stream the test follows would be the room's page, which sends no event."""
    gateway: Gateway = live.app.state.gateway
    live.app.state.gateway = replace(gateway, time_limiter=TimeLimiter(timeout_s=120))
    return live


async def bounded(call: Awaitable[T]) -> T:
    """Await ``call`` for at most 60 s: a hang fails the test instead of stalling it."""
    return await asyncio.wait_for(call, 60)


async def open_event(client: httpx.AsyncClient, redis_url: str) -> None:
    """Define the event, then wait (bounded) until the worker's scheduler opened it."""
    answer = await client.post("/api/v1/admin/coupons",
                               json={"coupon_id": COUPON, "stock": STOCK},
                               headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 201, answer.text
    redis = connect(redis_url)
    try:
        for _ in range(POLLS):
            if redis.get(CouponKeys(COUPON).active) == "active":
                return
            await asyncio.sleep(0.05)
    finally:
        redis.close()
    raise AssertionError("the event never opened")


async def press(client: httpx.AsyncClient, user: str) -> httpx.Response:
    """One issue request; the user's request id is its Idempotency-Key, so pressing
    again after an error replays the first answer rather than asking twice."""
    return await client.post("/api/v1/coupons/issue", json={"coupon_id": COUPON},
                             headers={"X-User-ID": user, "Idempotency-Key": f"{user}-key"})


async def press_all(client: httpx.AsyncClient, users: list[str]) -> list[httpx.Response]:
    """Every user's press at once."""
    return list(await bounded(asyncio.gather(*(press(client, user) for user in users))))


async def outcome(client: httpx.AsyncClient, user: str, answer: httpx.Response) -> str:
    """The final state of an accepted request (or the stream's timeout event)."""
    status = await follow(client, user, answer)
    return str(status["status"] if status["event"] in ("status", "room") else status["event"])


async def watch(client: httpx.AsyncClient, url: str, opened: asyncio.Event) -> list[str]:
    """Every state a status stream sends (or ``timeout``), until it ends."""
    seen: list[str] = []
    async for event in sse_events(client, url):
        data = json.loads(event["data"])
        seen.append(data["status"] if event.get("event") == "status" else event["event"])
        opened.set()
    return seen


async def open_streams(client: httpx.AsyncClient,
                       answers: list[httpx.Response]) -> list["asyncio.Task[list[str]]"]:
    """A status stream for each answer, returned once every one has sent its first event."""
    opened = [asyncio.Event() for _ in answers]
    streams = [asyncio.create_task(watch(client, answer.headers["Location"], seen))
               for answer, seen in zip(answers, opened, strict=True)]
    await bounded(asyncio.gather(*(seen.wait() for seen in opened)))
    return streams


async def finish(client: httpx.AsyncClient, accepted: dict[str, httpx.Response],
                 streams: list["asyncio.Task[list[str]]"]
                 ) -> tuple[set[str], dict[str, str], list[list[str]]]:
    """The request ids accepted, each user's final state, and what each stream saw."""
    finals = await bounded(asyncio.gather(
        *(outcome(client, user, answer) for user, answer in accepted.items())))
    watched = await bounded(asyncio.gather(*streams))
    return ({answer.json()["requestId"] for answer in accepted.values()},
            dict(zip(accepted, finals, strict=True)), list(watched))


def assert_unavailable(answer: httpx.Response) -> None:
    """The outage's answer: a typed 503 problem the client may retry, never a 500."""
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["code"] == "redis-unavailable"


def run_id(server: RedisServer) -> str:
    """The server process's identity: a restarted Redis has a new one."""
    with server.client() as client:
        return str(client.info("server")["run_id"])


def assert_nothing_lost(redis_server: RedisServer, db_url: str, accepted: set[str]) -> None:
    """Every accepted request is one stored coupon, as Redis and the database tell."""
    repository = Repository.from_url(db_url)
    try:
        report = SyncDriver(connect(redis_server.url), redis_server.url, repository).run(
            check_invariants(COUPON, with_database=True))
        stored = {coupon.request_id for coupon in repository.coupons_of_event(COUPON)}
    finally:
        repository.engine.dispose()
    assert report.ok, report.checks
    assert (report.persisted, report.in_flight) == (len(accepted), 0)
    assert report.stock_left == STOCK - len(accepted)
    assert stored == accepted


@pytest.mark.slow
def test_a_redis_restart_loses_no_accepted_request(redis_server: RedisServer,
                                                   db_url: str) -> None:
    """Redis is stopped (SIGTERM by pid) while status streams are open and requests are
    in flight, kept down until every request sent meanwhile has its answer, then started
    again on its AOF. Requests during the outage get a typed 503, never a hang or a 500;
    afterwards, without restarting the service, /health is ok, new and retried requests
    are accepted, every open stream ends COMPLETED (the hub subscribed again and its
    listeners re-read), and every request answered 202 is a stored coupon, checked
    against Redis and the database."""
    before = [f"before-{n}" for n in range(40)]
    in_flight = [f"flight-{n}" for n in range(20)]
    during = [f"during-{n}" for n in range(10)]
    after = [f"after-{n}" for n in range(20)]
    run_ids: list[str] = []

    async def scenario(url: str) -> tuple[set[str], dict[str, str], list[list[str]]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            await open_event(client, redis_server.url)
            held = WritesHeld(db_url)
            try:
                accepted: dict[str, httpx.Response] = {}
                for user, answer in zip(before, await press_all(client, before), strict=True):
                    assert answer.status_code == 202, answer.text
                    accepted[user] = answer
                streams = await open_streams(client, [accepted[u] for u in before[:WATCHED]])

                flying = asyncio.gather(*(press(client, user) for user in in_flight))
                await asyncio.sleep(0)                     # sent, or about to be
                run_ids.append(await asyncio.to_thread(run_id, redis_server))
                await asyncio.to_thread(redis_server.stop)

                assert_unavailable(await client.get("/health"))
                for answer in await press_all(client, during):
                    assert_unavailable(answer)
                retry = list(during)
                for user, answer in zip(in_flight, await bounded(flying), strict=True):
                    if answer.status_code == 202:
                        accepted[user] = answer
                    else:
                        assert_unavailable(answer)
                        retry.append(user)
                assert not any(stream.done() for stream in streams), "a stream ended early"

                await asyncio.to_thread(redis_server.start)  # same port, dir, AOF
                run_ids.append(await asyncio.to_thread(run_id, redis_server))
            finally:
                held.release()

            health = await client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json() == {"redis": "ok", "database": "ok"}
            for user, answer in zip(retry + after, await press_all(client, retry + after),
                                    strict=True):
                assert answer.status_code == 202, answer.text
                accepted[user] = answer
            return await finish(client, accepted, streams)

    with live_service(_config(redis_server, db_url)) as live:
        accepted, finals, watched = asyncio.run(scenario(patient(live).url))

    assert len(run_ids) == 2 and run_ids[0] != run_ids[1], "Redis was not restarted"
    assert len(accepted) == len(before + in_flight + during + after)
    assert set(finals.values()) == {"COMPLETED"}, finals
    assert watched == [["PROCESSING", "COMPLETED"]] * WATCHED
    assert_nothing_lost(redis_server, db_url, accepted)


@pytest.mark.slow
def test_the_first_requests_after_a_quiet_restart_are_accepted(
        redis_server: RedisServer, tmp_path: Path) -> None:
    """Redis restarts while no request is running: the connections idle in the service's
    pool died with it, and no failed request told the service so. The status hub lost
    its subscription, though: once it has subscribed again, the very first requests must
    be accepted (none may draw a dead connection), and the streams open across the
    restart end COMPLETED."""
    db_url = f"sqlite:///{tmp_path / 'quiet.sqlite'}"
    before = [f"before-{n}" for n in range(30)]
    after = [f"after-{n}" for n in range(30)]

    async def hub_subscribed() -> None:
        with redis_server.client() as redis:
            for _ in range(POLLS):
                if redis.execute_command("PUBSUB", "NUMPAT") >= 1:
                    return
                await asyncio.sleep(0.05)
        raise AssertionError("the status hub never subscribed again")

    async def scenario(url: str) -> tuple[set[str], dict[str, str], list[list[str]]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            await open_event(client, redis_server.url)
            held = WritesHeld(db_url)
            try:
                answers = await press_all(client, before)   # the pool grows its connections
                assert {answer.status_code for answer in answers} == {202}
                streams = await open_streams(client, answers[:WATCHED])
                await asyncio.to_thread(redis_server.stop)
                await asyncio.to_thread(redis_server.start)
                await hub_subscribed()
            finally:
                held.release()
            first = await press_all(client, after)
            for answer in first:
                assert answer.status_code == 202, answer.text
            return await finish(client, dict(zip(before + after, answers + first,
                                                  strict=True)), streams)

    with live_service(_config(redis_server, db_url)) as live:
        accepted, finals, watched = asyncio.run(scenario(patient(live).url))

    assert len(accepted) == len(before + after)
    assert set(finals.values()) == {"COMPLETED"}, finals
    assert watched == [["PROCESSING", "COMPLETED"]] * WATCHED
    assert_nothing_lost(redis_server, db_url, accepted)
