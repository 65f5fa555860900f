"""The whole store as plain data, to compare two stores key by key."""

from typing import Any

from couponsim.connection import RedisClient


def dump(client: RedisClient) -> dict[str, Any]:
    """Every key's type, value and whether it expires; stream entries without their IDs
    (a stream's IDs come from the server's clock) and groups by name and pending count."""
    store: dict[str, Any] = {}
    for key in sorted(client.scan_iter(count=1_000)):
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "stream":
            value = ([fields for _id, fields in client.xrange(key)],
                     sorted((group["name"], group["pending"])
                            for group in client.xinfo_groups(key)))
        else:
            raise AssertionError(f"{key}: a {kind} this dump does not know")
        store[key] = (kind, value, client.ttl(key) > 0)
    return store
