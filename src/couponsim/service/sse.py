"""A request's status as Server-Sent Events: the current status at once, then every
update until a final state, or the timeout.

Two ways to watch, chosen by configuration:

- :class:`HubStream` (hardened): one pub/sub connection per process listens to
  every coupon's status channel and hands each update to the streams waiting for
  its request (:class:`StatusHub`). A stream registers with the hub *before* it
  reads the current status, and the consumer writes a status and publishes it
  in one script, so an update is either in the read or reaches the stream.
- :class:`DesignStream` (as written): read the status, then subscribe this
  connection to the coupon's channel, shared by all its requests, and filter.
  An update published between the read and the subscription is missed (the
  client waits for the timeout), and N open streams each receive all M updates.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import redis
import redis.asyncio

from couponsim.connection import pubsub_client
from couponsim.drivers.aio import AsyncDriver, forget_idle_connections
from couponsim.errors import RedisUnavailable, UnknownRequest
from couponsim.flows.status import RequestState, RequestStatus, read_status
from couponsim.keys import STATUS_CHANNEL_PREFIX, CouponKeys
from couponsim.sold_out import SoldOutFlags

STATUS_CHANNELS = f"{STATUS_CHANNEL_PREFIX}*"
"""Every coupon's status channel (``CouponKeys.channel``), for the hub's one subscription."""
_LOST = (redis.ConnectionError, redis.TimeoutError, OSError)


def _status(message: dict[str, Any] | None) -> RequestStatus | None:
    """The status a pub/sub message carries, or None for anything else."""
    if message is None or message.get("type") not in ("message", "pmessage"):
        return None
    try:
        return RequestStatus.from_message(message["data"])
    except (ValueError, KeyError, TypeError):
        return None


async def _await_confirmation(pubsub: Any, kind: str, timeout_s: float = 5.0) -> None:
    """Only once Redis has confirmed a subscription can no update be missed."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        message = await pubsub.get_message(timeout=min(left, 0.5))
        if message is not None and message["type"] == kind:
            return
    raise RedisUnavailable("pub/sub", "the subscription was not confirmed in time")


async def _unsubscribe(pubsub: Any) -> None:
    """Unsubscribe explicitly, then close: a closed connection ends its subscriptions on
    Redis, but not on fakeredis, whose server would keep publishing to it."""
    with contextlib.suppress(*_LOST):
        await pubsub.unsubscribe()
        await pubsub.punsubscribe()
    await pubsub.aclose()


class Listener:
    """One stream's mailbox at the hub: updates of its request, or None meaning
    "the hub lost its connection for a while: read the status again"."""

    def __init__(self, hub: "StatusHub", coupon_id: str, request_id: str) -> None:
        self.key = (CouponKeys(coupon_id).channel, request_id)
        """Its coupon's channel and its request: the flows key request ids per coupon
        (the service makes ids unique across coupons; the hub does not rely on it)."""
        self.queue: asyncio.Queue[RequestStatus | None] = asyncio.Queue()
        self._hub = hub

    def close(self) -> None:
        self._hub.remove(self)


class StatusHub:
    """The process's one subscriber to every status channel, fanning out by request id.

    Whatever the number of open streams, Redis sends each update once to this
    process, and each stream gets only its own request's updates. If the
    connection drops (a Redis restart), the hub subscribes again and tells every
    listener to re-read, since updates published meanwhile are gone.

    Hearing every update, the hub also keeps the instance's sold-out flags
    honest: a FAILED update is a compensation, which gives a unit back.
    """

    def __init__(self, client: "redis.asyncio.Redis", retry_s: float = 0.5,
                 sold_out: SoldOutFlags | None = None) -> None:
        self._client = client
        self._retry_s = retry_s
        self._sold_out = sold_out
        self._listeners: dict[tuple[str, str], set[Listener]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._subscribe()
        self._task = asyncio.create_task(self._pump(), name="status-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            await _unsubscribe(self._pubsub)

    def listen(self, coupon_id: str, request_id: str) -> Listener:
        listener = Listener(self, coupon_id, request_id)
        self._listeners.setdefault(listener.key, set()).add(listener)
        return listener

    def remove(self, listener: Listener) -> None:
        waiting = self._listeners.get(listener.key)
        if waiting is not None:
            waiting.discard(listener)
            if not waiting:
                del self._listeners[listener.key]

    @property
    def listening(self) -> int:
        """Streams registered now (0 once every client has gone)."""
        return sum(len(waiting) for waiting in self._listeners.values())

    async def _subscribe(self) -> None:
        self._pubsub = self._client.pubsub()
        try:
            await self._pubsub.psubscribe(STATUS_CHANNELS)
            await _await_confirmation(self._pubsub, "psubscribe")
        except BaseException:   # each retry would otherwise keep a pool connection
            with contextlib.suppress(*_LOST):
                await self._pubsub.aclose()
            raise

    async def _pump(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except _LOST:
                await self._resubscribe()
                continue
            status = _status(message)
            if status is None:
                continue
            if status.state is RequestState.FAILED and self._sold_out is not None:
                coupon_id = CouponKeys.of_channel(message["channel"])
                if coupon_id is not None:
                    self._sold_out.stock_returned(coupon_id)
            for listener in self._listeners.get((message["channel"], status.request_id), ()):
                listener.queue.put_nowait(status)

    async def _resubscribe(self) -> None:
        with contextlib.suppress(*_LOST):
            await self._pubsub.aclose()
        # The client's other connections went with this one: drop them now and once
        # back, so that neither a request nor a listener's re-read gets a dead one.
        await forget_idle_connections(self._client)
        while True:
            await asyncio.sleep(self._retry_s)
            try:
                await self._subscribe()
            except (*_LOST, RedisUnavailable):
                continue
            await forget_idle_connections(self._client)
            if self._sold_out is not None:
                self._sold_out.forget_all()
            for waiting in self._listeners.values():
                for listener in waiting:
                    listener.queue.put_nowait(None)
            return


class StatusStream(Protocol):
    async def open(self) -> RequestStatus:
        """Start watching; the current status (UnknownRequest for a request never seen)."""

    async def next(self, timeout_s: float) -> RequestStatus | None:
        """The next status of this request, or None if none came within ``timeout_s``."""

    async def close(self) -> None:
        """Stop watching; safe to call more than once."""


class HubStream:
    """The hardened stream: register at the hub first, then read."""

    def __init__(self, driver: AsyncDriver, hub: StatusHub, coupon_id: str,
                 request_id: str) -> None:
        self._driver, self._hub = driver, hub
        self._coupon_id, self._request_id = coupon_id, request_id
        self._listener: Listener | None = None

    async def open(self) -> RequestStatus:
        self._listener = self._hub.listen(self._coupon_id, self._request_id)
        try:
            return await self._read()
        except BaseException:  # unknown, malformed, Redis down: nobody will listen
            await self.close()
            raise

    async def next(self, timeout_s: float) -> RequestStatus | None:
        assert self._listener is not None, "open() first"
        try:
            update = await asyncio.wait_for(self._listener.queue.get(), timeout_s)
        except TimeoutError:
            return None
        return update if update is not None else await self._read()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    async def _read(self) -> RequestStatus:
        current = await self._driver.run(read_status(self._coupon_id, self._request_id))
        if current is None:
            raise UnknownRequest(self._request_id)
        return current


class DesignStream:
    """The design as written: read, then subscribe this connection to the shared channel."""

    def __init__(self, driver: AsyncDriver, coupon_id: str, request_id: str) -> None:
        self._driver = driver
        self._coupon_id, self._request_id = coupon_id, request_id
        self._pubsub: Any = None

    async def open(self) -> RequestStatus:
        current = await self._driver.run(read_status(self._coupon_id, self._request_id))
        if current is None:
            raise UnknownRequest(self._request_id)
        self._pubsub = pubsub_client(self._driver.client).pubsub()   # cluster: one node
        try:   # a connection of its own per stream: the pool's size bounds the streams
            await self._pubsub.subscribe(CouponKeys(self._coupon_id).channel)
        except _LOST as exc:
            await self.close()
            raise RedisUnavailable(self._driver.url, str(exc)) from exc
        return current

    async def next(self, timeout_s: float) -> RequestStatus | None:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            update = _status(await self._pubsub.get_message(timeout=left))
            if update is not None and update.request_id == self._request_id:
                return update
        return None

    async def close(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            await _unsubscribe(pubsub)


def status_event(status: RequestStatus) -> dict[str, str]:
    """One SSE event, its data the document's ``CouponStatusUpdate`` (``message`` says
    why a request FAILED). Its id is the state, so a client reconnecting with
    Last-Event-ID is not sent again the state it has, yet always gets the one it has not
    seen."""
    return {"event": "status", "id": status.state.value,
            "data": json.dumps({"requestId": status.request_id, "status": status.state.value,
                                "couponCode": status.code, "message": status.reason})}


async def status_events(stream: StatusStream, current: RequestStatus, timeout_s: float,
                        last_event_id: str | None = None,
                        clock: Callable[[], float] = time.monotonic
                        ) -> AsyncIterator[dict[str, str]]:
    """The events of an opened stream, until a final state or ``timeout_s``; closes it."""
    try:
        if current.final or current.state.value != last_event_id:
            yield status_event(current)
        deadline = clock() + timeout_s
        while not current.final:
            left = deadline - clock()
            if left <= 0:
                yield {"event": "timeout", "data": json.dumps({"requestId": current.request_id})}
                return
            update = await stream.next(left)
            if update is not None and update != current:
                current = update
                yield status_event(current)
    finally:
        await stream.close()
