"""The design document's client contract on the wire, and who may read a status.

The document's clients (seed/000_7a321b90b7d8ee86.txt: Spring controllers, Jackson's
default camelCase naming) send ``{"couponId": ...}`` with ``X-User-ID``, follow
``GET /api/v1/coupons/status/{requestId}``, and apply with ``{"couponCode": ...}``;
the bodies and paths below are theirs. A status is readable only with the proof the
202's Location carries, bound to the request and the user, and anything else gets
the unknown request's 404.
"""

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx

from couponsim.codes import SIMULATION_CODES
from couponsim.service.config import ServiceConfig
from couponsim.service.keyed import Keyed, status_location

from .service_helpers import final_status, live_service
from .test_service_live import until_open

COUPON = "BLACK_FRIDAY_2024"          # the document's own coupon id
ADMIN = {"Authorization": "Bearer admin-secret"}


def _config(tmp_path: Path) -> ServiceConfig:
    return ServiceConfig(redis_url=f"fake://contract-{tmp_path.name}",
                         db_url=f"sqlite:///{tmp_path / 'contract.sqlite'}",
                         admin_token="admin-secret")


async def _open_event(client: httpx.AsyncClient, stock: int) -> None:
    defined = await client.post("/api/v1/admin/coupons", headers=ADMIN, json={
        "couponId": COUPON, "stock": stock, "discountKind": "fixed", "discountValue": 5000})
    assert defined.status_code == 201 and defined.json() == {"couponId": COUPON,
                                                             "outcome": "WARMED"}


async def _press(client: httpx.AsyncClient, redis_url: str, user: str) -> httpx.Response:
    """The document's request (X-User-ID and a CouponIssueRequest), once the event is open."""
    await until_open(redis_url, COUPON)
    answer = await client.post("/api/v1/coupons/issue", headers={"X-User-ID": user},
                               json={"couponId": COUPON})
    assert answer.status_code == 202 and answer.json()["status"] == "PROCESSING", answer.text
    return answer


def test_the_documents_client_issues_follows_and_applies(tmp_path: Path) -> None:
    config = _config(tmp_path)

    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await _open_event(client, stock=2)
            issued = await _press(client, config.redis_url, "user-1")
            body = issued.json()
            assert issued.status_code == 202
            assert set(body) >= {"requestId", "status", "message"}, body
            request_id = body["requestId"]
            location = issued.headers["Location"]
            assert location.startswith(f"/api/v1/coupons/status/{request_id}?proof=")
            done = await final_status(client, location)
            assert done["event"] == "status" and done["requestId"] == request_id
            assert done["status"] == "COMPLETED" and done["couponCode"]
            # the worker keyed it with the service's secret, not the public simulation one
            assert done["couponCode"] == config.codes().code(COUPON, request_id) \
                != SIMULATION_CODES.code(COUPON, request_id)
            order = await client.post("/api/v1/orders/ORDER-1/apply-coupon",
                                      headers={"X-User-ID": "user-1"},
                                      json={"couponCode": done["couponCode"],
                                            "originalAmount": 20_000})
            assert order.status_code == 200, order.text
            assert order.json() == {"outcome": "APPLIED", "orderId": "ORDER-1",
                                    "originalAmount": 20_000, "discountAmount": 5000,
                                    "finalAmount": 15_000, "appliedCoupon": done["couponCode"]}
            again = await client.post("/api/v1/coupons/issue", headers={"X-User-ID": "user-1"},
                                      json={"couponId": COUPON})
            assert again.status_code == 409 and again.json()["requestId"] != request_id

    with live_service(config) as live:
        asyncio.run(scenario(live.url))


def test_a_press_before_the_start_is_queued_with_the_documents_fields(
        tmp_path: Path) -> None:
    with live_service(_config(tmp_path), worker=False) as live:
        httpx.post(f"{live.url}/api/v1/admin/coupons", headers=ADMIN, json={
            "couponId": COUPON, "stock": 5,
            "startsAtMs": int(time.time() * 1000) + 60_000}).raise_for_status()
        early = httpx.post(f"{live.url}/api/v1/coupons/issue", headers={"X-User-ID": "u1"},
                           json={"couponId": COUPON})
        assert early.status_code == 202
        assert early.json()["status"] == "QUEUED" and early.json()["queuePosition"] >= 0
        room = httpx.get(live.url + early.headers["Location"], headers={"X-User-ID": "u1"})
        assert room.json()["state"] == "WAITING" and room.json()["queuePosition"] == 1
        assert set(room.json()) >= {"queueSize", "estimatedWaitTime", "statusUrl"}


def test_snake_case_bodies_are_still_accepted_and_the_schema_says_so(tmp_path: Path) -> None:
    with live_service(_config(tmp_path), worker=False) as live:
        httpx.post(f"{live.url}/api/v1/admin/coupons", headers=ADMIN,
                   json={"coupon_id": "old", "stock": 1}).raise_for_status()
        schema = httpx.get(f"{live.url}/openapi.json").json()["components"]["schemas"]
    assert set(schema["IssueBody"]["properties"]) == {"couponId"}
    assert "snake_case" in schema["IssueBody"]["description"]
    assert "snake_case" in schema["EventBody"]["description"]
    assert {"requestId", "queuePosition"} <= set(schema["IssueAccepted"]["properties"])


def _not_found_like_unknown(answer: httpx.Response, unknown: httpx.Response,
                            request_id: str) -> None:
    """The same 404 as for a request never issued (its detail names the id asked for)."""
    assert answer.status_code == unknown.status_code == 404
    expected: dict[str, Any] = unknown.json()
    expected["detail"] = expected["detail"].replace("never-issued", request_id)
    assert answer.json() == expected
    assert "couponCode" not in answer.text


def test_only_the_requester_reads_a_status(tmp_path: Path) -> None:
    config = _config(tmp_path)

    async def scenario(url: str, keyed: Keyed) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await _open_event(client, stock=2)
            issued = await _press(client, config.redis_url, "alice")
            request_id = issued.json()["requestId"]
            location = issued.headers["Location"]
            proof = location.partition("?proof=")[2]
            assert (await final_status(client, location))["status"] == "COMPLETED"
            unknown = await client.get("/api/v1/coupons/status/never-issued",
                                       headers={"X-User-ID": "alice"})
            bare = f"/api/v1/coupons/status/{request_id}"
            old = f"/api/v1/coupons/{COUPON}/status/{request_id}"
            user, coupon, expires, mac = proof.split("~")
            forged = "~".join((user, coupon, expires, ("A" if mac[0] != "A" else "B") + mac[1:]))
            past = Keyed(config.secret.encode(), 60, clock=lambda: time.time() - 3600)
            expired = past.proof(request_id, "alice", COUPON)
            for path, headers in [
                    (bare, {}),                                     # no identity, no proof
                    (bare, {"X-User-ID": "alice"}),                 # the owner, no proof
                    (old, {"X-User-ID": "bob"}),                    # the old attack
                    (location, {"X-User-ID": "bob"}),               # a proof, not bob's
                    (location, {"X-User-ID": "u{1}"}),              # a malformed identity
                    (f"{bare}?proof={forged}", {}),
                    (f"{bare}?proof={expired}", {}),
                    (status_location(request_id, keyed.proof(request_id, "bob", COUPON))
                     .replace(request_id, "x" + request_id[1:]), {}),  # another request
                    (f"/api/v1/coupons/other/status/{request_id}?proof={proof}", {}),
                    (f"{bare}?proof=", {})]:
                _not_found_like_unknown(await client.get(path, headers=headers), unknown,
                                        path.split("/")[-1].partition("?")[0])
            owner = await final_status(client, f"{old}?proof={proof}")   # the alias path
            assert owner["status"] == "COMPLETED" and owner["couponCode"]

    with live_service(config) as live:
        asyncio.run(scenario(live.url, live.app.state.keyed))


def test_request_ids_are_the_servers_and_unique_across_coupons() -> None:
    """The same Idempotency-Key, by two users or for two coupons, names different
    requests; by the same user for the same coupon, the same one."""
    keyed = Keyed(b"k" * 32, 60)
    ids = {keyed.request_id(user, coupon, "key-1")
           for user in ("u1", "u2") for coupon in ("a", "b")}
    assert len(ids) == 4
    assert keyed.request_id("u1", "a", "key-1") == keyed.request_id("u1", "a", "key-1")
    assert Keyed(b"j" * 32, 60).request_id("u1", "a", "key-1") not in ids
    assert len({keyed.request_id("u1", "a", None) for _ in range(3)}) == 3


def test_fresh_request_ids_are_random_128_bits_and_a_forked_child_draws_its_own() -> None:
    """Fresh ids are cut from random bytes drawn for many at once: across several draws
    none repeats, and a child forked with the parent's unread bytes never reuses them."""
    keyed = Keyed(b"k" * 32, 60)
    ids = [keyed.request_id("u1", "a", None) for _ in range(1_000)]
    assert len(set(ids)) == 1_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:    # the child: its next ids, then leave at once
        os.write(writer, " ".join(keyed.request_id("u", "a", None)
                                  for _ in range(5)).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    in_child = os.read(reader, 4096).decode().split()
    os.close(reader)
    in_parent = [keyed.request_id("u", "a", None) for _ in range(5)]
    assert len(in_child) == 5 and not set(in_child) & set(in_parent)
