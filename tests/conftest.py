"""One suite, several backends: every test taking ``driver`` runs on a fresh
FakeServer, on a flushed real Redis (a database of REDIS_URL's server that this
test process alone holds) and on a flushed Redis Cluster of 3 masters and 3
replicas the process starts itself on free ports; every test taking ``system``
runs on each Redis with SQLite (a file per test) and with PostgreSQL
(DATABASE_URL, in a schema of the process's own, tables dropped around each test).
pytest-xdist's workers and concurrent runs are kept apart so: ``tests/isolation.py``.

Without a real Redis (or redis-server for the cluster) or PostgreSQL their half
skips, unless COUPONSIM_REQUIRE_REDIS=1 / COUPONSIM_REQUIRE_POSTGRES=1 (set by
.ci/run), which turn the absence into a failure.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import fakeredis
import pytest

from couponsim.connection import RedisClient, connect, resolve
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import DatabaseUnavailable, RedisUnavailable
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.local_redis import LocalCluster, LocalRedisError, local_cluster, redis_server_path
from couponsim.persistence.database import make_engine
from couponsim.persistence.repository import Repository

from .isolation import NoFreeDatabase, leased_redis_database, private_postgres_schema

REAL_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("DATABASE_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Notebooks, and every test on a Redis Cluster (a test process starts six servers
    for them), are slow: ``-m "not slow"`` leaves them out of the quick loop."""
    for item in items:
        if item.path.suffix == ".ipynb" or item.get_closest_marker("redis_cluster"):
            item.add_marker(pytest.mark.slow)


@dataclass
class Backend:
    name: str
    url: str
    client: RedisClient

    def driver(self) -> SyncDriver:
        return SyncDriver(self.client, self.url)


def _missing(service: str, required_by: str, exc: Exception) -> NoReturn:
    """A real service that is not there: a failure where it is required (CI), else a skip."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {exc}")
    pytest.skip(f"no {service}: {exc}")


@pytest.fixture(scope="session")
def real_redis_url() -> Iterator[str]:
    """A database of the real Redis for this test process alone."""
    try:
        connect(REAL_REDIS_URL).close()
    except RedisUnavailable as exc:
        _missing("real Redis", "COUPONSIM_REQUIRE_REDIS", exc)
    try:
        with leased_redis_database(REAL_REDIS_URL) as url:
            yield url
    except NoFreeDatabase as exc:
        pytest.fail(str(exc))


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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-master, 3-replica cluster on ports the kernel picks (never the fixed
    7000-7005 another run may be starting on), started once for the test process
    and stopped by its pids."""
    if redis_server_path() is None:
        _missing("redis-server for a Redis Cluster", "COUPONSIM_REQUIRE_REDIS",
                 LocalRedisError("no redis-server on PATH"))
    with local_cluster(tmp_path_factory.mktemp("cluster"), ports=()) as cluster:
        yield cluster


@pytest.fixture
def cluster_backend(redis_cluster: LocalCluster) -> Iterator[Backend]:
    redis_cluster.flushall()
    client = connect(redis_cluster.url)
    yield Backend("cluster", redis_cluster.url, client)
    client.close()


@pytest.fixture
def private_backend() -> Iterator[Backend]:
    """A redis-server of this test process's own (``local://``), for what Redis counts
    server-wide: INFO commandstats counts every client's calls, and another run of the
    suite on the shared server would add its own."""
    if redis_server_path() is None:
        _missing("redis-server for a private Redis", "COUPONSIM_REQUIRE_REDIS",
                 LocalRedisError("no redis-server on PATH"))
    url = resolve("local://tests")
    client = connect(url)
    client.flushall()
    yield Backend("private", url, client)
    client.close()


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real_redis),
                        pytest.param("cluster", marks=pytest.mark.redis_cluster)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")  # type: ignore[no-any-return]


@pytest.fixture
def driver(backend: Backend) -> SyncDriver:
    return backend.driver()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """DATABASE_URL, in a schema of this test process's own. Whether it answers is asked
    with a ping: creating the tables there (``Repository.from_url``) would race with
    every other process doing the same in the shared ``public`` schema."""
    probe = Repository(make_engine(POSTGRES_URL))
    try:
        probe.ping()
    except DatabaseUnavailable as exc:
        _missing("PostgreSQL", "COUPONSIM_REQUIRE_POSTGRES", exc)
    finally:
        probe.engine.dispose()
    with private_postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def sqlite_repository(tmp_path: Path) -> Iterator[Repository]:
    repository = Repository.from_url(f"sqlite:///{tmp_path / 'coupons.sqlite'}")
    yield repository
    repository.engine.dispose()


@pytest.fixture
def postgres_repository(postgres_url: str) -> Iterator[Repository]:
    repository = Repository.from_url(postgres_url)
    repository.drop_schema()
    repository.create_schema()
    yield repository
    repository.drop_schema()
    repository.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def repository(request: pytest.FixtureRequest) -> Repository:
    return request.getfixturevalue(f"{request.param}_repository")  # type: ignore[no-any-return]


@pytest.fixture
def system(backend: Backend, repository: Repository) -> SyncDriver:
    """A driver with both halves of the system: a Redis and a database."""
    return SyncDriver(backend.client, backend.url, repository, sleep=lambda _s: None)


def open_event(driver: SyncDriver, variant: Variant = Variant.HARDENED,
               **fields: object) -> CouponEvent:
    """Warm up and activate an event with the given variant's lifecycle flows."""
    event = CouponEvent(**{"coupon_id": "c1", "stock": 10, **fields})  # type: ignore[arg-type]
    driver.run(lifecycle.open_event(event, variant))
    return event
