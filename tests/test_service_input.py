"""Bad input gets its documented 4xx as a problem document, and changes nothing in
Redis or the database (checked there, key by key and row by row)."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.persistence.repository import Repository
from couponsim.service.config import IdentityMode, ServiceConfig
from couponsim.service.framing import MAX_HEAD_BYTES
from couponsim.service.problem import PROBLEM_JSON

from .conftest import Backend
from .service_helpers import live_service, snapshot

ADMIN, SECRET = "admin-secret", "jwt-secret-of-at-least-32-bytes-length"
USER = {"X-User-ID": "u1"}


@pytest.fixture(params=["fake", pytest.param("real", marks=[pytest.mark.real_redis,
                                                            pytest.mark.postgres])])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(Redis URL, database URL) with an open event ``c1`` (stock 5)."""
    if request.param == "fake":
        urls = (f"fake://input-{tmp_path.name}", f"sqlite:///{tmp_path / 'input.sqlite'}")
    else:
        backend: Backend = request.getfixturevalue("real_backend")
        request.getfixturevalue("postgres_repository")
        urls = (backend.url, request.getfixturevalue("postgres_url"))
    repository = Repository.from_url(urls[1])
    SyncDriver(connect(urls[0]), urls[0], repository).run(
        lifecycle.open_event(CouponEvent("c1", stock=5), Variant.HARDENED))
    yield urls
    repository.engine.dispose()


def _token(sub: str, key: str = SECRET, expires_in_s: int = 60) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + expires_in_s}, key, "HS256")


class Chunks:
    """A body httpx sends chunked (no Content-Length), anew for each request."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)


ISSUE = "/api/v1/coupons/issue"
GOOD = {"coupon_id": "c1"}
ADMIN_PATH = "/api/v1/admin/coupons"
EVENT = {"coupon_id": "c2", "stock": 3}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}

HEADER_CASES: list[tuple[str, str, dict[str, str], dict[str, Any], int, str]] = [
    # (why, path, headers, request kwargs, status, problem code)
    ("no X-User-ID", ISSUE, {}, {"json": GOOD}, 401, "missing-identity"),
    ("malformed X-User-ID", ISSUE, {"X-User-ID": "u{1}"}, {"json": GOOD}, 400,
     "invalid-user-id"),
    ("too long X-User-ID", ISSUE, {"X-User-ID": "u" * 65}, {"json": GOOD}, 400,
     "invalid-user-id"),
    ("unknown coupon", ISSUE, USER, {"json": {"coupon_id": "nope"}}, 404, "unknown-coupon"),
    ("malformed coupon id", ISSUE, USER, {"json": {"coupon_id": "c:1"}}, 400, "invalid-input"),
    ("bad JSON", ISSUE, USER | {"Content-Type": "application/json"},
     {"content": b'{"coupon_id": '}, 400, "malformed-json"),
    ("wrong shape", ISSUE, USER, {"json": {"coupon": "c1"}}, 422, "invalid-request"),
    ("unknown field", ISSUE, USER, {"json": GOOD | {"admin": True}}, 422, "invalid-request"),
    ("oversized body", ISSUE, USER, {"json": GOOD | {"pad": "x" * 20_000}}, 413,
     "body-too-large"),
    ("malformed Idempotency-Key", ISSUE, USER | {"Idempotency-Key": "a b"}, {"json": GOOD},
     400, "invalid-input"),
    ("no admin token", ADMIN_PATH, {}, {"json": EVENT}, 401, "missing-identity"),
    ("wrong admin token", ADMIN_PATH, {"Authorization": "Bearer guess"}, {"json": EVENT}, 403,
     "forbidden"),
    ("bad event", ADMIN_PATH, {"Authorization": f"Bearer {ADMIN}"},
     {"json": EVENT | {"stock": 0}}, 422, "invalid-request"),
    ("inconsistent event", ADMIN_PATH, {"Authorization": f"Bearer {ADMIN}"},
     {"json": EVENT | {"starts_at_ms": 10, "ends_at_ms": 5}}, 400, "invalid-input"),
    ("apply without identity", "/api/v1/orders/o1/apply-coupon", {},
     {"json": {"code": "C-1", "amount": 1}}, 401, "missing-identity"),
    ("apply an unknown code", "/api/v1/orders/o1/apply-coupon", USER,
     {"json": {"code": "C-1", "amount": 1}}, 404, "unknown"),
    # Strict input: a boolean is not a number, nor is a string, on any route.
    ("stock true", ADMIN_PATH, AS_ADMIN, {"json": EVENT | {"stock": True}}, 422,
     "invalid-request"),
    ("stock as a string", ADMIN_PATH, AS_ADMIN, {"json": EVENT | {"stock": "5"}}, 422,
     "invalid-request"),
    ("stock as a float", ADMIN_PATH, AS_ADMIN, {"json": EVENT | {"stock": 5.0}}, 422,
     "invalid-request"),
    ("start time as a string", ADMIN_PATH, AS_ADMIN, {"json": EVENT | {"startsAtMs": "1"}},
     422, "invalid-request"),
    ("coupon id as a number", ISSUE, USER, {"json": {"couponId": 1}}, 422, "invalid-request"),
    ("amount as a string", "/api/v1/orders/o1/apply-coupon", USER,
     {"json": {"couponCode": "C-1", "originalAmount": "10"}}, 422, "invalid-request"),
    ("amount true", "/api/v1/orders/o1/apply-coupon", USER,
     {"json": {"couponCode": "C-1", "originalAmount": True}}, 422, "invalid-request"),
    ("both spellings of a field", ISSUE, USER, {"json": GOOD | {"couponId": "c1"}}, 422,
     "invalid-request"),
    ("empty Idempotency-Key", ISSUE, USER | {"Idempotency-Key": ""}, {"json": GOOD}, 400,
     "invalid-input"),
    ("oversized chunked body", ISSUE, USER | {"Content-Type": "application/json"},
     {"content": Chunks(64 * [b"x" * 16_384])}, 413, "body-too-large"),
    ("oversized admin body", ADMIN_PATH, AS_ADMIN, {"json": EVENT | {"name": "x" * 20_000}},
     413, "body-too-large"),
    ("headers over the bound", ISSUE, USER | {"X-Pad": "x" * MAX_HEAD_BYTES}, {"json": GOOD},
     431, "headers-too-large"),
    ("a 4 MB header", ISSUE, USER | {"X-Pad": "x" * 4_000_000}, {"json": GOOD}, 431,
     "headers-too-large"),
    ("a huge Last-Event-ID", ISSUE, USER | {"Last-Event-ID": "x" * 100_000}, {"json": GOOD},
     431, "headers-too-large"),
]


@pytest.mark.parametrize(("why", "path", "headers", "kwargs", "status", "code"), HEADER_CASES,
                         ids=[case[0] for case in HEADER_CASES])
def test_bad_input_is_refused_and_changes_nothing(
        stores: tuple[str, str], why: str, path: str, headers: dict[str, str],
        kwargs: dict[str, Any], status: int, code: str) -> None:
    redis_url, db_url = stores
    config = ServiceConfig(redis_url=redis_url, db_url=db_url, admin_token=ADMIN)
    repository = Repository.from_url(db_url)
    before = snapshot(redis_url, repository)
    with live_service(config, worker=False) as live:
        answer = httpx.post(live.url + path, headers=headers, timeout=10, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["code"] == code and answer.json()["status"] == status
    assert snapshot(redis_url, repository) == before
    repository.engine.dispose()


@pytest.mark.slow
def test_tokens_name_the_user_in_jwt_mode_and_bad_ones_change_nothing(
        stores: tuple[str, str]) -> None:
    redis_url, db_url = stores
    config = ServiceConfig(redis_url=redis_url, db_url=db_url, identity=IdentityMode.JWT,
                           jwt_key=SECRET)
    repository = Repository.from_url(db_url)
    refused = {
        "no token": {},
        "not a bearer": {"Authorization": "Basic dTE6cA=="},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "wrong key": {"Authorization": f"Bearer {_token('u1', SECRET[::-1])}"},
        "expired": {"Authorization": f"Bearer {_token('u1', expires_in_s=-60)}"},
        "header only": {"X-User-ID": "u1"},
    }
    before = snapshot(redis_url, repository)
    with live_service(config, worker=False) as live:
        for why, headers in refused.items():
            answer = httpx.post(live.url + ISSUE, json=GOOD, headers=headers, timeout=10)
            assert answer.status_code == 401, why
            assert answer.headers["content-type"] == PROBLEM_JSON
        assert snapshot(redis_url, repository) == before
        bad_sub = httpx.post(live.url + ISSUE, json=GOOD, timeout=10,
                             headers={"Authorization": f"Bearer {_token('u{1}')}"})
        assert bad_sub.status_code == 400
        good = httpx.post(live.url + ISSUE, json=GOOD, timeout=10,
                          headers={"Authorization": f"Bearer {_token('u7')}"})
        assert good.status_code == 202 and good.json()["status"] == "PROCESSING"
    repository.engine.dispose()


def test_a_whitespace_idempotency_key_is_refused(stores: tuple[str, str]) -> None:
    """Sent raw: clients refuse to send a blank header value, but a server may be sent
    one, and a parser hands it on as empty. Refused, not taken as absent (which would
    quietly cost the client its idempotency)."""
    redis_url, db_url = stores
    repository = Repository.from_url(db_url)
    before = snapshot(redis_url, repository)
    body = b'{"couponId": "c1"}'
    with live_service(ServiceConfig(redis_url=redis_url, db_url=db_url), worker=False) as live:
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(b"POST /api/v1/coupons/issue HTTP/1.1\r\nHost: x\r\n"
                               b"X-User-ID: u1\r\nIdempotency-Key: \t  \r\n"
                               b"Content-Type: application/json\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            head = connection.recv(65_536).split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 400 ") and PROBLEM_JSON.encode() in head
    assert snapshot(redis_url, repository) == before
    repository.engine.dispose()
