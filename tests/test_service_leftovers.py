"""A service never inherits a simulation's leftovers: a new event whose coupon the
database already holds is refused at warm-up, a worker that compensates every
decision makes /health say so, and ``couponsim serve`` says where it answers."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import httpx
import pytest

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import CouponHasRows
from couponsim.event import CouponEvent
from couponsim.flows import lifecycle
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.service.config import ServiceConfig
from couponsim.service.worker import Worker, WorkerConfig
from couponsim.sim.run import simulate
from couponsim.sim.scenario import load_scenario

from .service_helpers import STARTUP_S, _free_port, final_status, live_service

ADMIN = {"Authorization": "Bearer admin-secret"}
COUPON = "bf-2026"          # black_friday's coupon id


@pytest.fixture
def simulated_db(tmp_path: Path) -> str:
    """A database on which a simulation of black_friday stored its 20 coupons."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    repository = Repository.from_url(url)
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    outcome = simulate(load_scenario("black_friday", [
        "traffic.users=200", "event.stock=20", "traffic.spread_s=0.2"]),
        SyncDriver(client, "fake://simulation", repository))
    assert outcome.report.persisted == 20
    repository.engine.dispose()
    return url


def test_warming_up_a_coupon_with_another_events_rows_is_refused(
        tmp_path: Path, simulated_db: str) -> None:
    redis_url = f"fake://leftover-{tmp_path.name}"
    repository = Repository.from_url(simulated_db)
    driver = SyncDriver(connect(redis_url), redis_url, repository)
    with pytest.raises(CouponHasRows, match="already has 20 coupons"):
        driver.run(lifecycle.warm_up_fresh(CouponEvent(COUPON, 5)))
    assert not driver.client.exists(CouponKeys(COUPON).info), "nothing was written"
    assert driver.run(lifecycle.warm_up_fresh(CouponEvent("fresh", 5))) is \
        lifecycle.WarmupOutcome.WARMED
    assert driver.run(lifecycle.warm_up_fresh(CouponEvent("fresh", 6))) is \
        lifecycle.WarmupOutcome.REWARMED, "this instance may warm its own event again"
    repository.engine.dispose()


@pytest.mark.slow
def test_the_admin_route_refuses_it_and_health_reports_a_compensating_worker(
        tmp_path: Path, simulated_db: str) -> None:
    config = ServiceConfig(redis_url=f"fake://leftover-health-{tmp_path.name}",
                           db_url=simulated_db, admin_token="admin-secret")

    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            refused = await client.post("/api/v1/admin/coupons", headers=ADMIN,
                                        json={"coupon_id": COUPON, "stock": 5})
            assert refused.status_code == 409, refused.text
            assert refused.json()["code"] == "coupon-has-rows"
            assert (await client.get("/health")).status_code == 200
            # An event defined without the check (as couponsim did before): every
            # winner is refused by the database's stock cap and compensated.
            repository = Repository.from_url(simulated_db)
            SyncDriver(connect(config.redis_url), config.redis_url, repository).run(
                lifecycle.warm_up(CouponEvent(COUPON, 5)))
            repository.engine.dispose()
            user = {"X-User-ID": "u1"}
            for _ in range(600):
                issued = await client.post("/api/v1/coupons/issue", headers=user,
                                           json={"coupon_id": COUPON})
                if issued.json().get("status") == "PROCESSING":
                    break
                await asyncio.sleep(0.05)
            done = await final_status(client, issued.headers["Location"])
            assert done["status"] == "FAILED", done
            health = await client.get("/health")
            assert health.status_code == 503 and health.json()["code"] == "degraded"
            assert COUPON in health.json()["detail"]

    with live_service(config, worker=False) as live:
        repository = Repository.from_url(simulated_db)
        worker = Worker(config.redis_url, repository, WorkerConfig(tick_s=0.05),
                        codes=config.codes())
        live.app.state.worker = worker
        worker.start()
        try:
            asyncio.run(scenario(live.url))
        finally:
            worker.stop()
            repository.engine.dispose()


def _serve(tmp_path: Path, *options: str) -> str:
    """Start ``couponsim serve``, ask /livez once, stop it; everything it printed."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "couponsim.cli", "serve", "--port", str(port), "--no-worker",
         "--db-url", f"sqlite:///{tmp_path / 'serve.sqlite'}", *options],
        env=os.environ | {"COUPONSIM_ADMIN_TOKEN": "t"}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=STARTUP_S)
    assert server.returncode == 0, output
    return output.replace(str(port), "PORT")


@pytest.mark.slow
def test_serve_says_where_it_answers_and_logs_each_request_unless_quiet(
        tmp_path: Path) -> None:
    printed = _serve(tmp_path)
    assert "couponsim service on http://127.0.0.1:PORT" in printed
    assert "http://127.0.0.1:PORT/docs" in printed and "/openapi.json" in printed
    assert '"GET /livez HTTP/1.1" 200' in printed, printed      # uvicorn's access log
    quiet = _serve(tmp_path, "--quiet")
    assert "couponsim service" not in quiet and "GET /livez" not in quiet, quiet
