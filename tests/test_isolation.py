"""The suite's isolation (tests/isolation.py): each test process holds its own Redis
database, PostgreSQL schema and pub/sub namespace, so that xdist's workers and two
runs of the suite on one machine never see each other's state."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import sqlalchemy

from couponsim.keys import CHANNEL_NAMESPACE, STATUS_CHANNEL_PREFIX, CouponKeys
from couponsim.persistence.repository import Repository

from .conftest import POSTGRES_URL, REAL_REDIS_URL
from .isolation import leased_redis_database, private_postgres_schema

ROOT = Path(__file__).parent.parent


def test_this_process_has_a_channel_namespace_of_its_own() -> None:
    assert f"test-{os.getpid()}:" == CHANNEL_NAMESPACE
    assert STATUS_CHANNEL_PREFIX.startswith(CHANNEL_NAMESPACE)
    assert CouponKeys("c1").room_channel.startswith(CHANNEL_NAMESPACE)


@pytest.mark.real_redis
def test_a_leased_database_is_not_leased_again_until_released(real_redis_url: str) -> None:
    """This process already holds one database (the fixture's); two more leases get two
    other databases, and a released one is free again."""
    with leased_redis_database(REAL_REDIS_URL) as first:
        with leased_redis_database(REAL_REDIS_URL) as second:
            held = {real_redis_url, first, second}
            assert len(held) == 3, held
        with leased_redis_database(REAL_REDIS_URL) as again:
            assert again == second
    client: redis.Redis[str] = redis.Redis.from_url(first)
    try:
        assert client.ping()
    finally:
        client.close()


@pytest.mark.postgres
def test_a_private_schema_holds_the_tables_and_is_dropped_after(postgres_url: str) -> None:
    with private_postgres_schema(POSTGRES_URL) as url:
        repository = Repository.from_url(url)
        repository.create_schema()
        schema = make_schema_name(url)
        inspector = sqlalchemy.inspect(repository.engine)
        assert "coupons" in inspector.get_table_names(schema=schema)
        repository.engine.dispose()
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        assert schema not in sqlalchemy.inspect(engine).get_schema_names()
    finally:
        engine.dispose()


def make_schema_name(url: str) -> str:
    options = sqlalchemy.engine.make_url(url).query["options"]
    assert isinstance(options, str) and options.startswith("-csearch_path=")
    return options.removeprefix("-csearch_path=")


@pytest.mark.slow
@pytest.mark.real_redis
@pytest.mark.postgres
def test_two_runs_of_the_real_backend_tests_at_once_both_pass(
        real_redis_url: str, postgres_url: str, tmp_path: Path) -> None:
    """Two runs of real-backend tests started at once (each on two workers): flushes,
    dropped tables, pub/sub and the cluster's ports of one never reach the other.
    The files chosen flush Redis, drop and create tables, listen on status and usage
    channels and start a cluster (the whole real-backend half, twice, takes minutes:
    it is run by hand, see README)."""
    chosen = ["tests/test_service_stream.py", "tests/test_redemption.py"]
    env = os.environ | {"COUPONSIM_REQUIRE_REDIS": "1", "COUPONSIM_REQUIRE_POSTGRES": "1"}
    runs = [subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2",
         "-m", "(real_redis or postgres or redis_cluster) and not slow", "--basetemp",
         str(tmp_path / f"run{n}"), *chosen],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for n in (1, 2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
        assert " passed" in output.splitlines()[-1], output[-500:]
