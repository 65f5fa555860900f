import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import redis

from couponsim import local_redis
from couponsim.connection import connect, redact
from couponsim.errors import NoRedisServer, RedisUnavailable, UnknownRedisUrl
from couponsim.local_redis import private_server, redis_server_path, stop_private_servers


def test_fake_urls_share_one_server_per_name() -> None:
    connect("fake://conn-a").set("k", "v")
    assert connect("fake://conn-a").get("k") == "v"
    assert connect("fake://conn-b").get("k") is None


@pytest.mark.parametrize("url", ["mongodb://x", "http://127.0.0.1:6379", "127.0.0.1:6379"])
def test_unknown_schemes_are_refused(url: str) -> None:
    with pytest.raises(UnknownRedisUrl):
        connect(url)


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://user:pw@h:1/2") == "redis://user:***@h:1/2"
    assert redact("redis://:pw@h:1/2") == "redis://:***@h:1/2"
    assert redact("redis://h:1/2?password=s3cret&db=1") == "redis://h:1/2?password=***&db=1"
    assert redact("redis://h:1/2") == "redis://h:1/2"
    assert redact("unix:///tmp/r.sock") == "unix:///tmp/r.sock"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:abc/15", "redis://127.0.0.1:6379/notanumber"])
def test_malformed_real_urls_are_refused(url: str) -> None:
    with pytest.raises(UnknownRedisUrl):
        connect(url)


@pytest.mark.real_redis
def test_a_database_number_the_server_lacks_is_a_clear_error(real_redis_url: str) -> None:
    base = real_redis_url.rsplit("/", 1)[0]
    with pytest.raises(RedisUnavailable, match="/99"):
        connect(f"{base}/99")


def test_unix_socket_that_is_missing_is_unavailable() -> None:
    with pytest.raises(RedisUnavailable, match=r"unix:///nonexistent/redis\.sock"):
        connect("unix:///nonexistent/redis.sock")


@pytest.mark.real_redis
def test_a_real_url_connects(real_redis_url: str) -> None:
    assert connect(real_redis_url).ping()


needs_redis_server = pytest.mark.skipif(redis_server_path() is None,
                                        reason="no redis-server on PATH")


def _gone(pid: int, port: int) -> bool:
    """The process is dead (or never was ours) and nothing answers on its port."""
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        pass
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()
    return True


@needs_redis_server
@pytest.mark.slow
def test_local_urls_start_one_private_server_per_name_without_persistence() -> None:
    try:
        first = connect("local://conn-x")
        first.set("k", "v")
        assert connect("local://conn-x").get("k") == "v"
        assert connect("local://conn-y").get("k") is None
        config = first.config_get("*")
        assert config["appendonly"] == "no" and config["save"] == ""
        servers = [private_server("conn-x"), private_server("conn-y")]
        started = [(server.pid, server.port, server.directory) for server in servers]
        assert len({port for _pid, port, _dir in started}) == 2
    finally:
        stop_private_servers()
    for pid, port, directory in started:
        assert _gone(pid, port)
        assert not directory.exists()


@needs_redis_server
@pytest.mark.slow
def test_a_private_server_is_stopped_when_its_process_exits() -> None:
    script = ("from couponsim.connection import connect;"
              "from couponsim.local_redis import private_server;"
              "connect('local://').set('k', 'v');"
              "s = private_server();"
              "print(s.pid, s.port)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    pid, port = map(int, done.stdout.split())
    assert _gone(pid, port)


def _worker_server() -> tuple[int, int]:
    connect("local://worker").ping()
    server = private_server("worker")
    return server.pid, server.port


@needs_redis_server
@pytest.mark.slow
def test_each_sweep_worker_has_its_own_private_server_stopped_with_it() -> None:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pid, port = pool.submit(_worker_server).result(timeout=60)
        assert redis.Redis(port=port).ping()
    assert _gone(pid, port)
    assert "worker" not in local_redis._private   # the parent started none


def test_local_url_without_redis_server_on_path_names_how_to_get_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NoRedisServer, match="conda install -c conda-forge redis-server"):
        connect("local://missing")
    assert "missing" not in local_redis._private


@pytest.mark.parametrize("url", ["local://x:6379", "local://x/3", "local://x?db=1"])
def test_local_urls_take_only_a_name(url: str) -> None:
    with pytest.raises(UnknownRedisUrl, match="local://NAME"):
        connect(url)
