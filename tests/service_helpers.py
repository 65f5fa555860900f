"""A real uvicorn on loopback for the service's tests, and what they read it with."""

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from couponsim.connection import connect
from couponsim.drivers.sync import wall_clock_ms
from couponsim.keys import CouponKeys
from couponsim.persistence.models import Base
from couponsim.persistence.repository import Repository
from couponsim.service.app import build_app
from couponsim.service.config import ServiceConfig
from couponsim.service.framing import server_options
from couponsim.service.keyed import Keyed, status_location
from couponsim.service.worker import Worker, WorkerConfig
from couponsim.wire import events_of

STARTUP_S = 60.0
"""Most the tests wait for uvicorn to start or stop (a bound, never asserted)."""


@dataclass
class Live:
    url: str
    app: FastAPI


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def live_service(config: ServiceConfig, worker: bool = True) -> Iterator[Live]:
    """uvicorn serving the app in a thread on a free port, with a worker beside it."""
    app = build_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(),
                                           log_level="warning", lifespan="on",
                                           **server_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    repository = Repository.from_url(config.db_url)
    background = (Worker(config.redis_url, repository, WorkerConfig(tick_s=0.05),
                         codes=config.codes()) if worker else None)
    if background is not None:
        background.start()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        if background is not None:
            background.stop()
        server.should_exit = True
        thread.join(STARTUP_S)
        repository.engine.dispose()


def status_path(live: Live, coupon_id: str, request_id: str, user: str) -> str:
    """The status stream of a request issued without the service (by a flow), with the
    proof the service would have put in its 202's Location."""
    keyed: Keyed = live.app.state.keyed
    return status_location(request_id, keyed.proof(request_id, user, coupon_id))


async def sse_events(client: httpx.AsyncClient, url: str,
                     headers: dict[str, str] | None = None) -> AsyncIterator[dict[str, str]]:
    """The events of one SSE response, parsed (event, id, data), comments skipped."""
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for event in events_of(response.aiter_lines()):
            yield event


async def final_status(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """Follow a status stream to its end; the last status (or the timeout event)."""
    last: dict[str, Any] = {}
    async for event in sse_events(client, url):
        last = json.loads(event["data"]) | {"event": event.get("event")}
    return last


FINAL_ROOM_STATES = {"ISSUED", "DUPLICATE", "SOLD_OUT", "NOT_ACTIVE", "FAILED"}
ROOM_POLLS = 1_200
"""A minute of polling at most: a user the room never answers fails the test."""


async def follow(client: httpx.AsyncClient, user: str, answer: httpx.Response
                 ) -> dict[str, Any]:
    """Follow an accepted (202) press to its end the way a client would: the waiting
    room first when it was queued, then the status stream. The last status (with its
    ``event``), or ``{"status": ...}`` with the room's refusal."""
    location = answer.headers["Location"]
    if answer.json()["status"] == "QUEUED":
        for _ in range(ROOM_POLLS):
            room = (await client.get(location, headers={"X-User-ID": user})).json()
            if room["state"] in FINAL_ROOM_STATES:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{user} still waits in the room: {room}")
        if room["state"] != "ISSUED":
            return {"status": room["state"], "event": "room"}
        location = room["statusUrl"]
    return await final_status(client, location)


def start_now(redis_url: str, coupon_id: str) -> None:
    """Move an event's start to now; the worker's scheduler then opens it. Tests define
    their events an hour ahead and start them once they have seen what they wanted
    to see before the start: no timing margin that a loaded machine can eat. (The
    issue script checks the start time as well as the state: activating alone would
    not open the event.)"""
    with connect(redis_url) as client:
        client.hset(CouponKeys(coupon_id).info, "starts_at_ms", wall_clock_ms())


def crowd_clicks(users: int, seed: int) -> list[tuple[str, str]]:
    """Each user's click, in a shuffled order, with double clicks: every third user
    clicks again (another request), every fourth sends the same request again."""
    clicks = []
    for n in range(users):
        user = f"user-{n}"
        clicks.append((user, f"{user}-a"))
        if n % 3 == 0:
            clicks.append((user, f"{user}-b"))
        if n % 4 == 0:
            clicks.append((user, f"{user}-a"))
    random.Random(seed).shuffle(clicks)
    return clicks


def snapshot(redis_url: str, repository: Repository) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every key of the Redis database with its value, and every row of every table."""
    client = connect(redis_url)
    keys: dict[str, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        keys[key] = (kind, {"string": client.get, "hash": client.hgetall,
                            "set": client.smembers, "list": lambda k: client.lrange(k, 0, -1),
                            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                            "stream": lambda k: client.xrange(k)}[kind](key))
    client.close()
    with repository.engine.connect() as connection:
        rows = {table.name: sorted(map(tuple, connection.execute(select(table))), key=repr)
                for table in Base.metadata.sorted_tables}
    return keys, rows
