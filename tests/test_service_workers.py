"""``couponsim serve --workers 2``: two service processes on one port, each with its own
status hub, the worker once beside them. A crowd whose connections the kernel spreads
over both keeps every invariant, checked in Redis and the database afterwards; a status
proof made by one process opens the stream on the other."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.persistence.repository import Repository
from couponsim.verify import check_invariants

from .conftest import Backend
from .service_helpers import STARTUP_S, _free_port, crowd_clicks, final_status
from .test_service_live import ADMIN, click, define, until_open

pytestmark = [pytest.mark.real_redis, pytest.mark.postgres]

CROWD_CONNECTIONS = 100
SPAWN_S = 150.0
"""Most the test waits for both processes to answer: each is spawned afresh and imports
the command line's modules again (multiprocessing's spawn re-imports ``__main__``), which
took 15 to over 60 s on the 2 cores shared by five agents here (a bound, never asserted)."""


def _serving_workers(server: psutil.Process, port: int) -> dict[int, int]:
    """Each service process's established connections on the service's port."""
    return {child.pid: sum(1 for c in child.net_connections("tcp")
                           if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
            for child in server.children(recursive=True)
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in child.net_connections("tcp"))}


def _hubs(backend: Backend) -> set[int]:
    """Connections holding a pattern subscription on this test's database: one per
    status hub. CLIENT LIST is the whole server's: other test processes' hubs are told
    apart by their database, and an earlier test's hub on this database (a service still
    closing) by its client id, which Redis never gives twice."""
    db = int(backend.client.connection_pool.connection_kwargs.get("db", 0))
    return {int(client["id"]) for client in backend.client.client_list()
            if int(client["psub"]) > 0 and int(client["db"]) == db}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.ConnectError:
        return False


@pytest.mark.slow
def test_a_crowd_spread_over_two_service_processes_keeps_every_invariant(
        real_backend: Backend, postgres_url: str,
        postgres_repository: Repository) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    earlier_hubs = _hubs(real_backend)
    server = subprocess.Popen(
        [sys.executable, "-m", "couponsim.cli", "serve", "--port", str(port), "--workers", "2",
         "--redis-url", real_backend.url, "--db-url", postgres_url],
        env=os.environ | {"COUPONSIM_ADMIN_TOKEN": ADMIN})
    clicks = crowd_clicks(60, seed=11)
    spread: dict[int, int] = {}

    async def crowd() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=CROWD_CONNECTIONS)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            await define(client, "multi", 25, starts_at_ms=wall_clock_ms() - 1000)
            await until_open(real_backend.url, "multi")
            results = list(await asyncio.gather(*(click(client, "multi", user, key)
                                                  for user, key in clicks)))
            spread.update(_serving_workers(psutil.Process(server.pid), port))
            return results

    try:
        deadline = time.monotonic() + SPAWN_S
        # Each process's status hub subscribes while its app starts: two new pattern
        # subscribers mean both processes are starting (the first would otherwise take
        # the crowd). The port they share listens once a process has started (asyncio
        # calls listen() on the inherited socket as it begins to serve), a moment later.
        while len(_hubs(real_backend) - earlier_hubs) < 2 or not _answers(f"{base}/health"):
            assert server.poll() is None and time.monotonic() < deadline, "no service"
            time.sleep(0.2)
        results = asyncio.run(crowd())
        # A proof made by whichever process answered is read by every process: fresh
        # connections for the same stream land on either.
        for _ in range(10):
            location = _a_location(base, results)
            assert asyncio.run(_final(base + location))["status"] == "COMPLETED"
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(STARTUP_S) == 0
    assert len(spread) == 2 and all(spread.values()), f"the crowd was not spread: {spread}"
    assert {r["final"] for r in results} <= {"COMPLETED", "duplicate", "sold-out", "SOLD_OUT",
                                             "DUPLICATE"}
    report = SyncDriver.from_url(real_backend.url, postgres_repository).run(
        check_invariants("multi", with_database=True))
    assert report.ok, report.checks
    assert (report.persisted, report.stock_left, report.in_flight) == (25, 0, 0)
    winners = [r["user"] for r in results if r["final"] == "COMPLETED"]
    assert len(set(winners)) == 25


def _a_location(base: str, results: list[dict[str, Any]]) -> str:
    """A winner's status stream, asked for anew: the winning click's key replays its 202
    (crowd_clicks' keys are the user's name with -a or -b)."""
    for user in (r["user"] for r in results if r["final"] == "COMPLETED"):
        for key in (f"{user}-a", f"{user}-b"):
            answer = httpx.post(f"{base}/api/v1/coupons/issue", json={"couponId": "multi"},
                                headers={"X-User-ID": user, "Idempotency-Key": key})
            if answer.status_code == 202:
                return answer.headers["Location"]
    raise AssertionError("no winning click replays")


async def _final(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await final_status(client, url)
