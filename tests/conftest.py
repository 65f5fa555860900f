"""One suite, two backends: every test taking ``driver`` runs on a fresh
FakeServer and on a flushed real Redis (REDIS_URL, a dedicated database).

Without a real Redis the real half skips, unless COUPONSIM_REQUIRE_REDIS=1
(set by .ci/run), which turns the absence into a failure.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass

import fakeredis
import pytest
import redis

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import RedisUnavailable
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle

REAL_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_REDIS = os.environ.get("COUPONSIM_REQUIRE_REDIS") == "1"


@dataclass
class Backend:
    name: str
    url: str
    client: redis.Redis

    def driver(self) -> SyncDriver:
        return SyncDriver(self.client, self.url)


@pytest.fixture(scope="session")
def real_redis_url() -> str:
    try:
        connect(REAL_REDIS_URL).close()
    except RedisUnavailable as exc:
        if REQUIRE_REDIS:
            pytest.fail(f"COUPONSIM_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(f"no real Redis: {exc}")
    return REAL_REDIS_URL


@pytest.fixture
def real_backend(real_redis_url: str) -> Iterator[Backend]:
    client = connect(real_redis_url)
    client.flushdb()
    yield Backend("real", real_redis_url, client)
    client.flushdb()
    client.close()


@pytest.fixture
def fake_backend() -> Backend:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return Backend("fake", "fake://test", client)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real_redis)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")  # type: ignore[no-any-return]


@pytest.fixture
def driver(backend: Backend) -> SyncDriver:
    return backend.driver()


def open_event(driver: SyncDriver, variant: Variant = Variant.HARDENED,
               **fields: object) -> CouponEvent:
    """Warm up and activate an event with the given variant's lifecycle flows."""
    event = CouponEvent(**{"coupon_id": "c1", "stock": 10, **fields})  # type: ignore[arg-type]
    if variant is Variant.SEED:
        driver.run(lifecycle.warm_up_seed(event))
        driver.run(lifecycle.activate_seed(event.coupon_id))
    else:
        driver.run(lifecycle.warm_up(event))
        driver.run(lifecycle.activate(event.coupon_id))
    return event
