"""Connections by URL: ``fake://NAME`` (the embedded default), ``redis://``,
``rediss://``, ``unix://`` and ``redis+cluster://HOST:PORT`` (a Redis Cluster
reached through any one of its nodes, served by redis-py's RedisCluster).

Every ``fake://NAME`` URL names one in-process FakeServer, shared by every
client made for that URL, so a job and its checker see the same data just as
two clients of a real server would.
"""

from typing import TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import redis
from redis.cluster import RedisCluster

from couponsim.errors import RedisUnavailable, UnknownRedisUrl

DEFAULT_REDIS_URL = "fake://default"
REAL_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")
CLUSTER_SCHEME = "redis+cluster"

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""A client of one Redis server or of a whole cluster: the commands this package
sends behave the same on both because every multi-key call stays in one slot."""

_fake_servers: dict[str, fakeredis.FakeServer] = {}


def redact(url: str) -> str:
    """The URL with any password (in the address or the query) replaced, for messages."""
    parts = original = urlsplit(url)
    if "@" in parts.netloc and ":" in parts.netloc.rsplit("@", 1)[0]:
        user, host = parts.netloc.rsplit("@", 1)
        parts = parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        hidden = [(name, "***" if name == "password" else value) for name, value in query]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return url if parts == original else urlunsplit(parts)


def connect(url: str = DEFAULT_REDIS_URL, *, check: bool = True) -> RedisClient:
    """A client for ``url`` that decodes replies to ``str``.

    With ``check`` the server is pinged at once, so a Redis that is down is
    reported here, naming the URL, rather than in the middle of a job. A
    cluster client always contacts the cluster at once, ``check`` or not:
    RedisCluster learns the slot map when it is made.
    """
    scheme = urlsplit(url).scheme
    client: RedisClient
    if scheme == CLUSTER_SCHEME:
        client = _connect_cluster(url)
    elif scheme == "fake":
        name = url.split("://", 1)[1] or "default"
        server = _fake_servers.setdefault(name, fakeredis.FakeServer())
        client = fakeredis.FakeRedis(server=server, decode_responses=True)
    elif scheme in REAL_SCHEMES:
        database = urlsplit(url).path.strip("/")
        if scheme != "unix" and database and not database.isdigit():
            # redis-py would quietly fall back to database 0 here.
            raise UnknownRedisUrl(f"Redis URL {redact(url)!r}: database must be a number")
        try:
            client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0)
        except ValueError as exc:
            raise UnknownRedisUrl(f"malformed Redis URL {redact(url)!r}: {exc}") from None
    else:
        raise UnknownRedisUrl(
            f"unknown Redis URL {redact(url)!r}: use fake://NAME or one of "
            + ", ".join(f"{s}://" for s in REAL_SCHEMES)
        )
    if check:
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            raise RedisUnavailable(redact(url), str(exc)) from exc
    return client


def _connect_cluster(url: str) -> RedisCluster:
    """RedisCluster for ``redis+cluster://[USER:PASSWORD@]HOST:PORT``: redis-py reads
    the same URL with the plain scheme; a cluster has no database number."""
    parts = urlsplit(url)
    if parts.path.strip("/"):
        raise UnknownRedisUrl(f"Redis Cluster URL {redact(url)!r}: a cluster has only database 0")
    plain = urlunsplit(parts._replace(scheme="redis"))
    try:
        return RedisCluster.from_url(plain, decode_responses=True, socket_connect_timeout=2.0)
    except ValueError as exc:
        raise UnknownRedisUrl(f"malformed Redis URL {redact(url)!r}: {exc}") from None
    except (redis.RedisError, OSError) as exc:
        raise RedisUnavailable(redact(url), str(exc)) from exc


async def connect_async(url: str = DEFAULT_REDIS_URL, *,
                        check: bool = True) -> "redis.asyncio.Redis":
    """The redis.asyncio twin of :func:`connect`, for the service: same URLs, same checks.

    A ``fake://NAME`` client shares NAME's FakeServer with the sync clients, so
    the service and consumers in threads of the same process see one store.
    """
    import fakeredis.aioredis
    import redis.asyncio

    if urlsplit(url).scheme == CLUSTER_SCHEME:
        # redis.asyncio's RedisCluster has no pub/sub, which the status stream needs.
        raise UnknownRedisUrl(f"{redact(url)!r}: the service does not run on a cluster yet")
    connect(url, check=False).close()  # the same URL validation, without a round trip
    client: redis.asyncio.Redis
    if urlsplit(url).scheme == "fake":
        name = url.split("://", 1)[1] or "default"
        server = _fake_servers.setdefault(name, fakeredis.FakeServer())
        client = fakeredis.aioredis.FakeRedis(server=server, decode_responses=True)
    else:
        # redis-py 8's pool fails the 101st concurrent caller at once; under a crowd (a
        # MULTI/EXEC per waiting-room poll holds a connection) that was a 503 for users
        # Redis would have answered in a millisecond: wait up to 5 s for a connection.
        client = redis.asyncio.Redis.from_pool(redis.asyncio.BlockingConnectionPool.from_url(
            url, decode_responses=True, socket_connect_timeout=2.0, max_connections=100,
            timeout=5))
    if check:
        try:
            await client.ping()
        except (redis.RedisError, OSError) as exc:
            await client.aclose()
            raise RedisUnavailable(redact(url), str(exc)) from exc
    return client
