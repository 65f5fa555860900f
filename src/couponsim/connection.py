"""Connections by URL: ``fake://NAME`` (the embedded default), ``local://NAME`` (a
private redis-server this process starts from PATH, see
:func:`couponsim.local_redis.private_server`), ``redis://``, ``rediss://``,
``unix://`` and ``redis+cluster://HOST:PORT`` (a Redis Cluster reached through
any one of its nodes, served by redis-py's RedisCluster).

Every ``fake://NAME`` URL names one in-process FakeServer, shared by every
client made for that URL, so a job and its checker see the same data just as
two clients of a real server would.
"""

import weakref
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import redis
from redis.cluster import RedisCluster

from couponsim.errors import RedisUnavailable, UnknownRedisUrl
from couponsim.local_redis import private_server

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.cluster

DEFAULT_REDIS_URL = "fake://default"
REAL_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")
LOCAL_SCHEME = "local"
CLUSTER_SCHEME = "redis+cluster"

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""A client of one Redis server or of a whole cluster: the commands this package
sends behave the same on both because every multi-key call stays in one slot."""

AsyncRedisClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"
"""The redis.asyncio twin of :data:`RedisClient`, for the service."""

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


def resolve(url: str) -> str:
    """``url`` itself, or for ``local://NAME`` the ``redis://`` URL of NAME's private
    server in this process, started now if it is not running yet."""
    parts = urlsplit(url)
    if parts.scheme != LOCAL_SCHEME:
        return url
    if parts.path.strip("/") or parts.query or parts.port is not None:
        raise UnknownRedisUrl(f"Redis URL {redact(url)!r}: a local:// URL is local://NAME, "
                              "with no port, database or options")
    return private_server(parts.netloc or "default").url


def connect(url: str = DEFAULT_REDIS_URL, *, check: bool = True) -> RedisClient:
    """A client for ``url`` that decodes replies to ``str``.

    With ``check`` the server is pinged at once, so a Redis that is down is
    reported here, naming the URL, rather than in the middle of a job. A
    cluster client always contacts the cluster at once, ``check`` or not:
    RedisCluster learns the slot map when it is made.
    """
    url = resolve(url)
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
            f"unknown Redis URL {redact(url)!r}: use fake://NAME, local://NAME or one of "
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
                        check: bool = True) -> AsyncRedisClient:
    """The redis.asyncio twin of :func:`connect`, for the service: same URLs, same checks.

    A ``fake://NAME`` client shares NAME's FakeServer with the sync clients, so
    the service and consumers in threads of the same process see one store.
    A ``redis+cluster://`` URL gives redis.asyncio's RedisCluster, which learns
    the slot map on its first call (at once with ``check``). It cannot
    subscribe as a plain client does: see :func:`pubsub_client`.
    """
    import fakeredis.aioredis
    import redis.asyncio
    import redis.asyncio.cluster

    url = resolve(url)
    parts = urlsplit(url)
    if parts.scheme != CLUSTER_SCHEME:   # the sync cluster client would contact the cluster
        connect(url, check=False).close()  # the same URL validation, without a round trip
    elif parts.path.strip("/"):
        raise UnknownRedisUrl(f"Redis Cluster URL {redact(url)!r}: a cluster has only database 0")
    client: AsyncRedisClient
    if parts.scheme == CLUSTER_SCHEME:
        try:
            # Each node's pool fails its 101st concurrent caller at once (RedisCluster has
            # no blocking pool); coalescing keeps a crowd well below that.
            client = redis.asyncio.cluster.RedisCluster.from_url(
                urlunsplit(parts._replace(scheme="redis")), decode_responses=True,
                socket_connect_timeout=2.0)
        except ValueError as exc:
            raise UnknownRedisUrl(f"malformed Redis URL {redact(url)!r}: {exc}") from None
    elif parts.scheme == "fake":
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
            await close_async(client)
            raise RedisUnavailable(redact(url), str(exc)) from exc
    return client


_node_clients: "weakref.WeakKeyDictionary[Any, dict[str, redis.asyncio.Redis]]" = \
    weakref.WeakKeyDictionary()
"""Per async cluster client: the plain clients made for its nodes, by node name."""
_pubsub_nodes: "weakref.WeakKeyDictionary[Any, redis.asyncio.cluster.ClusterNode]" = \
    weakref.WeakKeyDictionary()
"""Per async cluster client: the node its subscribers listen on."""

_NODE_OPTIONS = ("username", "password", "credential_provider", "client_name", "encoding",
                 "encoding_errors", "decode_responses", "socket_timeout",
                 "socket_connect_timeout", "socket_keepalive", "health_check_interval",
                 "protocol")
"""What a plain client of a node takes over from the cluster's own connections."""


def node_client(cluster: "redis.asyncio.cluster.RedisCluster",
                node: "redis.asyncio.cluster.ClusterNode") -> "redis.asyncio.Redis":
    """A plain redis.asyncio client of one node of ``cluster`` (made once per node), with
    the cluster's credentials and options: for what RedisCluster does not do as a plain
    client does, a MULTI/EXEC with the usual reply parsing, or pub/sub. Closed by
    :func:`close_async` with the cluster client."""
    import redis.asyncio

    clients = _node_clients.setdefault(cluster, {})
    client = clients.get(node.name)
    if client is None:
        options = {name: node.connection_kwargs[name] for name in _NODE_OPTIONS
                   if node.connection_kwargs.get(name) is not None}
        client = clients[node.name] = redis.asyncio.Redis(
            host=node.host, port=int(node.port), **options)
    return client


def node_clients(cluster: "redis.asyncio.cluster.RedisCluster") -> "list[redis.asyncio.Redis]":
    """Every plain client made so far for ``cluster``'s nodes."""
    return list(_node_clients.get(cluster, {}).values())


def pubsub_client(client: AsyncRedisClient) -> "redis.asyncio.Redis":
    """The client to subscribe with: ``client`` itself, or for a cluster a plain client
    of one of its nodes (the same one each time). A PUBLISH in a Redis Cluster reaches
    every node, so one node hears every channel, whatever slot its name hashes to."""
    import redis.asyncio.cluster

    if not isinstance(client, redis.asyncio.cluster.RedisCluster):
        return client
    node = _pubsub_nodes.get(client)
    if node is None:   # the default node; the URL's until the cluster is first called
        node = _pubsub_nodes[client] = client.get_default_node() or client.startup_nodes[0]
    return node_client(client, node)


async def close_async(client: AsyncRedisClient) -> None:
    """Close ``client`` and, for a cluster, the plain clients made for its nodes."""
    import redis.asyncio.cluster

    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        _pubsub_nodes.pop(client, None)
        for plain in _node_clients.pop(client, {}).values():
            await plain.aclose()
    await client.aclose()
