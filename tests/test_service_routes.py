"""The routes around issuing: operators' (admin, health, metrics), checkout (apply,
cancel), the per-user limit, the page, the OpenAPI schema and ``couponsim serve``."""

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from couponsim.cli import main
from couponsim.connection import connect
from couponsim.consumers import drain
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.gateway import Gateway
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.records import IssuedCoupon
from couponsim.resilience.time_limiter import TimeLimiter
from couponsim.service.config import ServiceConfig
from couponsim.service.problem import PROBLEM_JSON
from couponsim.service.routes import IssueFastPath

from .service_helpers import STARTUP_S, _free_port, final_status, live_service

ADMIN = {"Authorization": "Bearer admin-secret"}


def _config(tmp_path: Path, **fields: object) -> ServiceConfig:
    return ServiceConfig(redis_url=f"fake://routes-{tmp_path.name}",
                         db_url=f"sqlite:///{tmp_path / 'routes.sqlite'}",
                         admin_token="admin-secret", **fields)  # type: ignore[arg-type]


def test_an_operator_defines_an_event_and_a_user_gets_uses_and_gives_back_a_coupon(
        tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            event = {"coupon_id": "sale", "stock": 3, "discount_value": 5000, "min_order": 100}
            defined = await client.post("/api/v1/admin/coupons", json=event, headers=ADMIN)
            assert defined.status_code == 201 and defined.json()["outcome"] == "WARMED"
            user = {"X-User-ID": "alice"}
            for _ in range(600):  # the scheduler opens it at once (start 0); then issue
                issued = await client.post("/api/v1/coupons/issue", json={"coupon_id": "sale"},
                                           headers=user | {"Idempotency-Key": "alice-1"})
                if issued.json()["status"] == "PROCESSING":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the event never opened: {issued.json()}")
            again = await client.post("/api/v1/admin/coupons", json=event, headers=ADMIN)
            assert again.status_code == 409 and again.json()["code"] == "already-started"
            done = await final_status(client, issued.headers["Location"])
            assert done["status"] == "COMPLETED"
            code = done["couponCode"]
            apply = await client.post("/api/v1/orders/o1/apply-coupon", headers=user,
                                      json={"code": code, "amount": 20_000})
            assert apply.status_code == 200
            assert apply.json() == {"outcome": "APPLIED", "orderId": "o1", "originalAmount": 20_000,
                                    "discountAmount": 5000, "finalAmount": 15_000,
                                    "appliedCoupon": code}
            stolen = await client.post("/api/v1/orders/o2/apply-coupon",
                                       headers={"X-User-ID": "bob"},
                                       json={"code": code, "amount": 20_000})
            assert stolen.status_code == 403 and stolen.json()["code"] == "not-owned"
            twice = await client.post("/api/v1/orders/o2/apply-coupon", headers=user,
                                      json={"code": code, "amount": 20_000})
            assert twice.status_code == 409 and twice.json()["code"] == "already-used"
            mine = await client.get("/api/v1/users/me/coupons", headers=user)
            assert [(c["couponCode"], c["couponId"], c["status"], c["orderId"])
                    for c in mine.json()] == [(code, "sale", "USED", "o1")]
            cancel = await client.post("/api/v1/orders/o1/cancel-coupon", headers=user,
                                       json={"code": code})
            assert cancel.json() == {"released": True, "status": "ACTIVE"}
            mine = await client.get("/api/v1/users/me/coupons", headers=user)
            assert [c["status"] for c in mine.json()] == ["ACTIVE"]
            assert (await client.get("/api/v1/users/me/coupons",
                                     headers={"X-User-ID": "bob"})).json() == []
            cancel = await client.post("/api/v1/orders/o1/cancel-coupon", headers=user,
                                       json={"code": code})
            assert cancel.json() == {"released": False, "status": None}
            health = await client.get("/health")
            assert health.status_code == 200 and health.json() == {"redis": "ok",
                                                                   "database": "ok"}
            metrics = (await client.get("/metrics")).text
            assert 'couponsim_issue_answers_total{answer="ISSUED"} 1.0' in metrics
            assert 'couponsim_issue_queue_lag{coupon="sale"} 0.0' in metrics
            assert 'couponsim_breaker_state{state="CLOSED"} 1.0' in metrics
            assert "EventSource" in (await client.get("/")).text

    with live_service(_config(tmp_path)) as live:
        asyncio.run(scenario(live.url))


def test_one_user_cannot_hammer_the_issue_route(tmp_path: Path) -> None:
    config = _config(tmp_path, user_limit=2, user_period_ms=60_000)
    with live_service(config, worker=False) as live:
        httpx.post(f"{live.url}/api/v1/admin/coupons", json={"coupon_id": "c", "stock": 5},
                   headers=ADMIN).raise_for_status()
        answers = [httpx.post(f"{live.url}/api/v1/coupons/issue", json={"coupon_id": "c"},
                              headers={"X-User-ID": "greedy"}) for _ in range(3)]
        assert [a.status_code for a in answers][2] == 429
        assert answers[2].json()["code"] == "rate-limited" and "Retry-After" in answers[2].headers
        other = httpx.post(f"{live.url}/api/v1/coupons/issue", json={"coupon_id": "c"},
                           headers={"X-User-ID": "modest"})
        assert other.status_code == 202


def test_an_instance_over_its_rate_limit_sends_users_to_the_room_and_says_its_time(
        tmp_path: Path) -> None:
    """``--rate-limit``: the instance's own budget a second. The presses over it are sent
    to the waiting room, which Redis holds; every answer carries the time the service
    spent on it."""
    config = _config(tmp_path, rate_limit_per_s=1)
    driver = SyncDriver.from_url(config.redis_url)
    driver.run(lifecycle.open_event(CouponEvent("limited", stock=5), Variant.HARDENED))
    with live_service(config, worker=False) as live:
        time.sleep(1 - time.time() % 1)      # the presses within one of the limiter's cycles
        answers = [httpx.post(f"{live.url}/api/v1/coupons/issue", json={"coupon_id": "limited"},
                              headers={"X-User-ID": f"u{n}"}) for n in range(3)]
    paths = [answer.json().get("path") for answer in answers]
    assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
    assert paths == ["direct", "queued: rate limited", "queued: rate limited"]
    assert driver.client.zcard(CouponKeys("limited").waiting) == 2
    served = [float(a.headers["server-timing"].removeprefix("app;dur=")) for a in answers]
    assert all(0 < ms < 5_000 for ms in served), served


@pytest.mark.parametrize(("fields", "message"), [
    ({"rate_limit_per_s": -1}, "rate limit"), ({"time_limit_ms": 0}, "time limit"),
    ({"time_limit_ms": float("nan")}, "time limit")])
def test_a_gateway_setting_out_of_range_is_refused(tmp_path: Path, fields: dict[str, float],
                                                   message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _config(tmp_path, **fields)


def test_the_sold_out_flag_is_cleared_when_stock_comes_back(tmp_path: Path) -> None:
    """The instance answers a sold-out coupon from its flag, but a unit given back (a
    compensation, announced on the status channel) reaches its hub and clears the flag:
    the next user is issued the unit, not refused. Here the database refuses u1's
    coupon (u1 holds one from before) and the consumer compensates it."""
    config = _config(tmp_path)
    event = CouponEvent("flag", stock=1)
    with live_service(config, worker=False) as live:
        driver = SyncDriver(connect(config.redis_url), config.redis_url,
                            Repository.from_url(config.db_url))
        driver.run(lifecycle.open_event(event, Variant.HARDENED))
        driver.repository.save_coupon(event)  # type: ignore[union-attr]
        driver.repository.persist_issued([  # type: ignore[union-attr]
            IssuedCoupon("FLAG-EARLIER", "earlier", "u1", "flag", 1, 0, 10**13)])

        def press(user: str) -> httpx.Response:
            return httpx.post(f"{live.url}/api/v1/coupons/issue", json={"coupon_id": "flag"},
                              headers={"X-User-ID": user})

        assert press("u1").status_code == 202
        refused = [press(user) for user in ("u2", "u3")]
        assert [answer.status_code for answer in refused] == [410, 410]
        records = [driver.client.exists(CouponKeys("flag").request(answer.json()["requestId"]))
                   for answer in refused]
        assert records == [1, 0], "u2 was refused by the script, u3 by the flag alone"
        assert driver.client.get(CouponKeys("flag").stock) == "0"
        drain(driver, "flag")
        assert driver.client.get(CouponKeys("flag").stock) == "1", "the unit came back"
        for _ in range(100):   # the hub hears the FAILED update a moment after Redis sent it
            again = press("u4")
            if again.status_code != 410:
                break
            time.sleep(0.05)
        assert again.status_code == 202 and again.json()["status"] == "PROCESSING"
        mine = httpx.get(f"{live.url}/api/v1/users/me/coupons", headers={"X-User-ID": "u1"})
        assert [(c["couponCode"], c["status"]) for c in mine.json()] == [("FLAG-EARLIER", "ACTIVE")]


def test_the_openapi_schema_describes_every_answer(tmp_path: Path) -> None:
    with live_service(_config(tmp_path), worker=False) as live:
        schema = httpx.get(f"{live.url}/openapi.json").json()
    issue = schema["paths"]["/api/v1/coupons/issue"]["post"]["responses"]
    assert {"202", "409", "410", "403", "404", "413", "429"} <= set(issue)
    assert PROBLEM_JSON in issue["410"]["content"]


def test_the_issue_route_runs_on_its_fast_path_documented_and_measured_as_before(
        tmp_path: Path) -> None:
    """Presses take the plain route the app tries first (not FastAPI's included route,
    which still documents them); the metrics name the route's path and count the answer
    as before, and another method is still 405."""
    with live_service(_config(tmp_path), worker=False) as live:
        assert isinstance(live.app.router.routes[0], IssueFastPath)
        httpx.post(f"{live.url}/api/v1/admin/coupons", json={"coupon_id": "fast", "stock": 5},
                   headers=ADMIN).raise_for_status()
        pressed = httpx.post(f"{live.url}/api/v1/coupons/issue", json={"couponId": "fast"},
                             headers={"X-User-ID": "u1"})
        assert pressed.status_code == 202, pressed.text
        assert httpx.get(f"{live.url}/api/v1/coupons/issue").status_code == 405
        metrics = httpx.get(f"{live.url}/metrics").text
        schema = httpx.get(f"{live.url}/openapi.json").json()
    assert 'couponsim_request_seconds_count{route="/api/v1/coupons/issue"} 2.0' in metrics
    told = pressed.json()["status"]
    answer = "ISSUED" if told == "PROCESSING" else pressed.json()["roomState"]
    assert f'couponsim_issue_answers_total{{answer="{answer}"}} 1.0' in metrics, told
    assert "requestBody" in schema["paths"]["/api/v1/coupons/issue"]["post"]


@pytest.mark.slow
def test_couponsim_serve_runs_a_working_system_in_one_process(tmp_path: Path) -> None:
    """`couponsim serve --scenario black_friday --start-in 1s` on the embedded defaults."""
    port = _free_port()
    env = os.environ | {"COUPONSIM_ADMIN_TOKEN": "t"}
    server = subprocess.Popen(
        [sys.executable, "-m", "couponsim.cli", "serve", "--port", str(port),
         "--db-url", f"sqlite:///{tmp_path / 'serve.sqlite'}", "--scenario", "black_friday",
         "--start-in", "0.2s"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.stdout
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        base, user = f"http://127.0.0.1:{port}", {"X-User-ID": "u1"}
        answer = httpx.post(f"{base}/api/v1/coupons/issue", json={"coupon_id": "bf-2026"},
                            headers=user)
        assert answer.status_code == 202, answer.text
        location = answer.headers["Location"]
        if answer.json()["status"] == "QUEUED":        # before the start: the pre-queue
            while (room := httpx.get(base + location, headers=user).json())["state"] in (
                    "WAITING", "ADMITTED"):
                time.sleep(0.05)
            location = room["statusUrl"]
        assert asyncio.run(_final(base + location))["status"] == "COMPLETED"
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(STARTUP_S) == 0


async def _final(url: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await final_status(client, url)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_service_commands_are_wired(command: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0 and "--redis-url" in capsys.readouterr().out


def test_a_call_that_outlives_the_time_limiter_after_issuing_is_followed_not_queued(
        tmp_path: Path) -> None:
    """The script issues the last coupon, but the call outlives the time limiter: the
    gateway sends the user to a room that, sold out, answers ISSUED without taking them
    in. The 202 must point at the request's status stream (it ended COMPLETED), not at
    a room that never knew the user (they polled it for ever: a flake of the crowd test
    under load); another press of the same user is a duplicate."""
    config = _config(tmp_path)
    SyncDriver.from_url(config.redis_url).run(
        lifecycle.open_event(CouponEvent("late", stock=1), Variant.HARDENED))

    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            user = {"X-User-ID": "u1"}
            first = await client.post("/api/v1/coupons/issue", headers=user,
                                      json={"couponId": "late"})
            assert first.status_code == 202, first.text
            assert first.json()["status"] == "PROCESSING", first.json()
            done = await final_status(client, first.headers["Location"])
            assert done["status"] == "COMPLETED" and done["couponCode"], done
            again = await client.post("/api/v1/coupons/issue", headers=user,
                                      json={"couponId": "late"})
            assert again.status_code == 409 and again.json()["code"] == "duplicate", again.text

    with live_service(config) as live:
        gateway: Gateway = live.app.state.gateway
        live.app.state.gateway = dataclasses.replace(
            gateway, time_limiter=TimeLimiter(timeout_s=1e-9))   # every call is late
        asyncio.run(scenario(live.url))
