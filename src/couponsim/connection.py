"""Connections by URL: ``fake://NAME`` (the embedded default), ``redis://``,
``rediss://`` and ``unix://``.

Every ``fake://NAME`` URL names one in-process FakeServer, shared by every
client made for that URL, so a job and its checker see the same data just as
two clients of a real server would.
"""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import redis

from couponsim.errors import RedisUnavailable, UnknownRedisUrl

DEFAULT_REDIS_URL = "fake://default"
REAL_SCHEMES = ("redis", "rediss", "unix")

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


def connect(url: str = DEFAULT_REDIS_URL, *, check: bool = True) -> redis.Redis:
    """A client for ``url`` that decodes replies to ``str``.

    With ``check`` the server is pinged at once, so a Redis that is down is
    reported here, naming the URL, rather than in the middle of a job.
    """
    scheme = urlsplit(url).scheme
    client: redis.Redis
    if scheme == "fake":
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
