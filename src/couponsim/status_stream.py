"""A request's status as a stream, in wall time: the current state at once,
then every update from pub/sub until a final state or the timeout.

It subscribes before it reads: the consumer writes a status and publishes it
in one script, so an update is either in the first read or arrives on the
channel; reading first and subscribing second could miss it and wait for
the timeout.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from couponsim.drivers.sync import SyncDriver
from couponsim.errors import RedisUnavailable, UnknownRequest
from couponsim.flows.status import RequestStatus, read_status
from couponsim.keys import CouponKeys

DEFAULT_TIMEOUT_S = 300.0
"""The design's five minutes."""


def watch_status(client: redis.Redis, coupon_id: str, request_id: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[RequestStatus]:
    """Yield the request's status now and on every change, until final or ``timeout_s``."""
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(CouponKeys(coupon_id).channel)
        _await_subscription(pubsub, clock() + min(timeout_s, 5.0), clock)
        current = SyncDriver(client).run(read_status(coupon_id, request_id))
        if current is None:
            raise UnknownRequest(request_id)
        yield current
        deadline = clock() + timeout_s
        while not current.final and (left := deadline - clock()) > 0:
            message = pubsub.get_message(timeout=min(left, 1.0))
            if message is None or message["type"] != "message":
                continue
            update = RequestStatus.from_message(message["data"])
            if update.request_id == request_id:
                current = update
                yield current
    finally:
        pubsub.close()


def _await_subscription(pubsub: Any, deadline: float, clock: Callable[[], float]) -> None:
    """Wait for Redis to confirm the subscription: only then can no update be missed."""
    while clock() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "subscribe":
            return
    raise RedisUnavailable("pub/sub", "the subscription was not confirmed in time")
