"""The service for real: uvicorn on loopback, httpx clients, the worker beside it,
judged on what Redis and the database hold afterwards."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.service.config import ServiceConfig
from couponsim.verify import check_invariants

from .conftest import Backend
from .service_helpers import crowd_clicks, final_status, follow, live_service

ADMIN = "admin-secret"


@pytest.fixture(params=["fake", pytest.param("real", marks=[pytest.mark.real_redis,
                                                            pytest.mark.postgres])])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceConfig]:
    """A service on a fresh fake:// server and SQLite file, or on the flushed real Redis
    test database and PostgreSQL."""
    if request.param == "fake":
        yield ServiceConfig(redis_url=f"fake://service-{tmp_path.name}",
                            db_url=f"sqlite:///{tmp_path / 'service.sqlite'}",
                            admin_token=ADMIN, stream_timeout_s=30)
        return
    backend: Backend = request.getfixturevalue("real_backend")
    request.getfixturevalue("postgres_repository")
    yield ServiceConfig(redis_url=backend.url, db_url=request.getfixturevalue("postgres_url"),
                        admin_token=ADMIN, stream_timeout_s=30)


async def define(client: httpx.AsyncClient, coupon_id: str, stock: int,
                 **fields: object) -> None:
    answer = await client.post("/api/v1/admin/coupons",
                               json={"coupon_id": coupon_id, "stock": stock, **fields},
                               headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 201, answer.text


async def until_open(redis_url: str, coupon_id: str) -> None:
    """Wait (bounded) until the worker's scheduler has activated the event."""
    client = connect(redis_url)
    try:
        for _ in range(400):
            if client.get(CouponKeys(coupon_id).active) == "active":
                return
            await asyncio.sleep(0.05)
    finally:
        client.close()
    raise AssertionError("the event never opened")


async def click(client: httpx.AsyncClient, coupon_id: str, user: str,
                key: str | None) -> dict[str, Any]:
    """One press of the button, followed to its final answer the way a client would:
    the status stream when issued, the waiting room when queued."""
    headers = {"X-User-ID": user} | ({"Idempotency-Key": key} if key else {})
    answer = await client.post("/api/v1/coupons/issue", json={"coupon_id": coupon_id},
                               headers=headers)
    body = answer.json()
    if answer.status_code != 202:
        return {"user": user, "http": answer.status_code, "final": body["code"]}
    status = await follow(client, user, answer)
    if status["event"] == "room":
        return {"user": user, "http": 202, "final": status["status"]}
    return {"user": user, "http": 202, "final": status["status"],
            "code": status.get("couponCode"), "request": status["requestId"]}


@pytest.mark.slow
def test_many_clients_all_reach_a_final_state_and_the_invariants_hold(
        config: ServiceConfig) -> None:
    """60 users for 25 coupons, with double clicks (a new key, or the same key again):
    every click ends COMPLETED or refused, each user holds at most one coupon, the
    stock is gone exactly, and Redis and the database agree."""
    clicks = crowd_clicks(60, seed=7)

    async def scenario(url: str) -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            await define(client, "live", 25)
            await until_open(config.redis_url, "live")
            return list(await asyncio.gather(*(click(client, "live", user, key)
                                               for user, key in clicks)))

    with live_service(config) as live:
        results = asyncio.run(scenario(live.url))
    assert len(results) == len(clicks)
    assert {r["final"] for r in results} <= {"COMPLETED", "duplicate", "sold-out", "SOLD_OUT",
                                             "DUPLICATE"}
    winners = {r["user"]: r["code"] for r in results if r["final"] == "COMPLETED"}
    assert len(winners) == 25
    per_user = Counter((r["user"], r["code"]) for r in results if r["final"] == "COMPLETED")
    assert len({user for user, _code in per_user}) == len(per_user)   # one code per user
    repository = Repository.from_url(config.db_url)
    report = SyncDriver(connect(config.redis_url), config.redis_url, repository).run(
        check_invariants("live", with_database=True))
    repository.engine.dispose()
    assert report.ok, report.checks
    assert (report.persisted, report.stock_left, report.in_flight) == (25, 0, 0)


def test_an_idempotency_key_replays_the_first_answer_for_its_user_only(
        config: ServiceConfig) -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await define(client, "idem", 5, starts_at_ms=wall_clock_ms() - 1000)
            await until_open(config.redis_url, "idem")
            headers = {"X-User-ID": "u1", "Idempotency-Key": "key-1"}
            first = await client.post("/api/v1/coupons/issue", json={"coupon_id": "idem"},
                                      headers=headers)
            again = await client.post("/api/v1/coupons/issue", json={"coupon_id": "idem"},
                                      headers=headers)
            assert first.status_code == again.status_code == 202
            assert first.json()["requestId"] == again.json()["requestId"] != "key-1"
            other = await client.post("/api/v1/coupons/issue", json={"coupon_id": "idem"},
                                      headers={"X-User-ID": "u1"})
            assert other.status_code == 409 and other.json()["code"] == "duplicate"
            # Another user's same key is that user's own request: not a conflict that
            # would tell them u1's key exists, nor a way to take it from u1.
            own = await client.post("/api/v1/coupons/issue", json={"coupon_id": "idem"},
                                    headers={"X-User-ID": "u2", "Idempotency-Key": "key-1"})
            assert own.status_code == 202, own.text
            assert own.json()["requestId"] not in (first.json()["requestId"], "key-1")
            done = await final_status(client, first.headers["Location"])
            theirs = await final_status(client, own.headers["Location"])
            assert done["status"] == theirs["status"] == "COMPLETED"
            assert done["couponCode"] != theirs["couponCode"]
            assert (done["requestId"], theirs["requestId"]) == (
                first.json()["requestId"], own.json()["requestId"])

    with live_service(config) as live:
        asyncio.run(scenario(live.url))
