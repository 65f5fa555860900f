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
from couponsim.flows.status import RequestStatus, parse_seed_status, read_seed_status, read_status
from couponsim.keys import SEED_STATUS_CHANNEL, CouponKeys

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


def _await_subscription(pubsub: Any, deadline: float, clock: Callable[[], float],
                        kind: str = "subscribe") -> None:
    """Wait for Redis to confirm the subscription: only then can no update be missed."""
    while clock() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == kind:
            return
    raise RedisUnavailable("pub/sub", "the subscription was not confirmed in time")


def watch_seed_status(client: redis.Redis, request_id: str,
                      timeout_s: float = DEFAULT_TIMEOUT_S,
                      clock: Callable[[], float] = time.monotonic,
                      subscribed: Callable[[], None] = lambda: None,
                      ) -> Iterator[RequestStatus | None]:
    """The design's status stream as written (docs/seed_trace.md S29-S36).

    Read the status and send it if there is one (a COMPLETED read here does not end
    the stream); then subscribe, on a connection of this stream's own, to the one
    channel every update goes to, and pass on this request's updates until one is
    final. ``timeout(5 min)`` counts from the last event sent, and its error
    becomes one error event: ``None``. An update published between the read and
    the subscription is never seen. ``subscribed`` is called once the subscription
    is confirmed (a test seam: what happens next is what the user can still hear).
    """
    current = SyncDriver(client).run(read_seed_status(request_id))
    if current is not None:
        yield current
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        pubsub.psubscribe(SEED_STATUS_CHANNEL)
        _await_subscription(pubsub, clock() + 5.0, clock, "psubscribe")
        subscribed()
        deadline = clock() + timeout_s
        while (left := deadline - clock()) > 0:
            message = pubsub.get_message(timeout=min(left, 1.0))
            if message is None or message["type"] != "pmessage":
                continue
            update = parse_seed_status(request_id, message["data"])
            if update.request_id != request_id:
                continue
            yield update
            if update.final:
                return
            deadline = clock() + timeout_s
        yield None
    finally:
        pubsub.close()
