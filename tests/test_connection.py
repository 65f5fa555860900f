import pytest

from couponsim.connection import connect, redact
from couponsim.errors import RedisUnavailable, UnknownRedisUrl


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
