"""The HTTP API: each route turns a request into one flow call and its result into
an answer. Which answer means which status is decided here, in tables; what the
answer is, is decided by the flows.

- ``POST /api/v1/coupons/issue``: through the gateway. 202 + ``Location`` of the
  status stream when issued (PROCESSING), or of the waiting room when queued;
  409 DUPLICATE, 410 SOLD_OUT (the stock is gone: retrying will not help),
  403 NOT_ACTIVE (ended). ``Idempotency-Key`` is the request id: the same key
  replays the first answer (the issue script keeps it). A request without one,
  for a coupon this instance saw sold out within the last second, is answered
  410 by the gateway's flag without asking Redis: a user already holding a
  coupon then hears 410 where Redis would say 409, and after the end 410 for 403.
- ``GET /api/v1/coupons/{coupon}/status/{request}``: Server-Sent Events.
- ``GET /api/v1/coupons/{coupon}/waiting-room``: the caller's place and wait.
- ``GET /api/v1/users/me/coupons``: the caller's coupons, from the database.
- ``POST /api/v1/orders/{order}/apply-coupon`` and ``.../cancel-coupon``.
- ``POST /api/v1/admin/coupons``: define and warm up an event (admin token).
- ``/health`` (Redis and database answer), ``/livez`` (the process answers),
  ``/metrics`` (Prometheus).
"""

import hashlib
import secrets
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from couponsim.drivers.aio import AsyncDriver
from couponsim.effects import Command, DbCall
from couponsim.event import CouponEvent, DiscountKind
from couponsim.flows.gateway import Gateway, GatewayAnswer, gateway_issue
from couponsim.flows.issue import IssueOutcome, IssueRequest
from couponsim.flows.lifecycle import WarmupOutcome, warm_up_fresh
from couponsim.flows.redeem import apply_coupon, coupons_held, release_coupon
from couponsim.flows.throttle import SharedLimit, acquire_shared
from couponsim.flows.waiting_room import PRE_QUEUE_SPREAD, room_status
from couponsim.ids import validate_id
from couponsim.pricing import ApplyOutcome, ApplyRequest
from couponsim.service.config import ServiceConfig, StreamVariant
from couponsim.service.identity import ID_SCHEMA, Admin, User
from couponsim.service.metrics import Metrics
from couponsim.service.problem import Problem, responses
from couponsim.service.sse import DesignStream, HubStream, StatusStream, status_events

router = APIRouter()

_REFUSED: dict[str, tuple[int, str, str]] = {
    IssueOutcome.DUPLICATE: (409, "duplicate", "This user already holds this coupon"),
    IssueOutcome.SOLD_OUT: (410, "sold-out", "The coupon is sold out"),
    IssueOutcome.NOT_ACTIVE: (403, "not-active", "The event is not open"),
    "FAILED": (409, "failed", "The waiting room could not issue with this request id"),
}
"""Issue answers that end the request at once, by status and problem code."""

_APPLY_REFUSED: dict[ApplyOutcome, tuple[int, str]] = {
    ApplyOutcome.UNKNOWN: (404, "The coupon code does not exist"),
    ApplyOutcome.NOT_OWNED: (403, "The coupon belongs to another user"),
    ApplyOutcome.ALREADY_USED: (409, "The coupon is used by another order"),
    ApplyOutcome.EXPIRED: (410, "The coupon has expired"),
    ApplyOutcome.BELOW_MINIMUM: (422, "The order is below the coupon's minimum"),
    ApplyOutcome.LOCKED: (409, "Another checkout of this coupon is in progress; retry"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueBody(_Strict):
    coupon_id: str = Field(min_length=1, max_length=64)


class IssueAccepted(BaseModel):
    request_id: str
    status: Literal["PROCESSING", "QUEUED"]
    room_state: str | None = None
    """In the room: WAITING, ADMITTED, or ISSUED (the coupon came from an earlier click)."""
    position: int = 0
    path: str
    """How the gateway handled the request (direct, or why it was queued)."""


class RoomView(BaseModel):
    state: str | None
    position: int
    size: int
    eta_s: float | None
    admission_rate: float | None
    request_id: str | None
    status_url: str | None


class HeldCouponView(BaseModel):
    code: str
    coupon_id: str
    status: str
    """ACTIVE, USED (on ``order_id``) or EXPIRED."""
    order_id: str | None
    issued_at_ms: int
    expires_at_ms: int


class ApplyBody(_Strict):
    code: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=0, le=2**53 - 1)


class ApplyAnswer(BaseModel):
    outcome: str
    code: str
    order_id: str
    original: int
    discount: int
    final: int


class CancelBody(_Strict):
    code: str = Field(min_length=1, max_length=64)


class CancelAnswer(BaseModel):
    released: bool
    status: str | None


class EventBody(_Strict):
    coupon_id: str = Field(min_length=1, max_length=64)
    stock: int = Field(ge=1)
    name: str = ""
    discount_kind: DiscountKind = DiscountKind.FIXED
    discount_value: int = 10_000
    max_discount: int = 0
    min_order: int = 0
    per_user_limit: int = 1
    validity_s: int = 7 * 24 * 3600
    starts_at_ms: int = 0
    ends_at_ms: int = 0


class WarmupAnswer(BaseModel):
    coupon_id: str
    outcome: str


def _driver(request: Request) -> AsyncDriver:
    driver: AsyncDriver = request.app.state.driver
    return driver


def _config(request: Request) -> ServiceConfig:
    config: ServiceConfig = request.app.state.config
    return config


def status_url(coupon_id: str, request_id: str) -> str:
    return f"/api/v1/coupons/{coupon_id}/status/{request_id}"


def room_url(coupon_id: str) -> str:
    return f"/api/v1/coupons/{coupon_id}/waiting-room"


@router.post("/api/v1/coupons/issue", status_code=202, response_model=IssueAccepted,
             responses=responses(400, 401, 403, 404, 409, 410, 413, 422, 429, 503))
async def issue_coupon(body: IssueBody, user: User, request: Request,
                       idempotency_key: Annotated[str | None, Header(
                           description="the request id; the same key replays the first "
                                       "answer", json_schema_extra=ID_SCHEMA)] = None
                       ) -> Response:
    driver, config = _driver(request), _config(request)
    metrics: Metrics = request.app.state.metrics
    gateway: Gateway = request.app.state.gateway
    issue_request = IssueRequest(body.coupon_id, user,
                                 validate_id("request", idempotency_key or uuid.uuid4().hex))
    if config.user_limit:
        limit = SharedLimit("user-" + hashlib.blake2b(user.encode(), digest_size=16).hexdigest(),
                            config.user_limit, config.user_period_ms)
        verdict = await driver.run(acquire_shared(limit, driver.now_ms()))
        if not verdict.allowed:
            metrics.answers.labels("RATE_LIMITED").inc()
            raise Problem(429, "rate-limited", "Too many requests from this user",
                          headers={"Retry-After": str(-(-verdict.retry_after_ms // 1000))})
    answer = await driver.run(gateway_issue(gateway, issue_request,
                                            secrets.randbelow(PRE_QUEUE_SPREAD),
                                            fresh=idempotency_key is None))
    told = answer.outcome.value if answer.outcome is not None else answer.room_state or ""
    metrics.answers.labels(told).inc()
    if told in _REFUSED:
        status, code, title = _REFUSED[told]
        raise Problem(status, code, title, request_id=answer.request_id)
    return _accepted(answer, body.coupon_id)


def _accepted(answer: GatewayAnswer, coupon_id: str) -> Response:
    """The 202, serialized here: a returned model would be validated against the
    response model and encoded again by FastAPI, on the route that carries the crowd.
    The response model still documents it."""
    if answer.outcome is IssueOutcome.ISSUED:
        location = status_url(coupon_id, answer.request_id)
        accepted = IssueAccepted(request_id=answer.request_id, status="PROCESSING",
                                 path=answer.path.value)
    else:
        location = room_url(coupon_id)
        accepted = IssueAccepted(request_id=answer.request_id, status="QUEUED",
                                 room_state=answer.room_state, position=answer.position,
                                 path=answer.path.value)
    return Response(accepted.model_dump_json(), 202, {"Location": location},
                    media_type="application/json")


@router.get("/api/v1/coupons/{coupon_id}/status/{request_id}",
            response_class=EventSourceResponse, responses={
                200: {"content": {"text/event-stream": {}},
                      "description": "status events until a final state, or timeout"},
                **responses(400, 404, 503)})
async def status_stream(coupon_id: str, request_id: str, request: Request,
                        last_event_id: Annotated[str | None, Header()] = None
                        ) -> EventSourceResponse:
    driver, config = _driver(request), _config(request)
    validate_id("coupon", coupon_id)
    validate_id("request", request_id)
    stream: StatusStream = (HubStream(driver, request.app.state.hub, coupon_id, request_id)
                            if config.stream is StreamVariant.HARDENED
                            else DesignStream(driver, coupon_id, request_id))
    current = await stream.open()
    metrics: Metrics = request.app.state.metrics
    metrics.streams.inc()

    async def closed() -> None:
        """Runs after the response (or instead of it): no subscription outlives a client."""
        await stream.close()
        metrics.streams.dec()

    return EventSourceResponse(
        status_events(stream, current, config.stream_timeout_s, last_event_id),
        ping=config.heartbeat_s, background=BackgroundTask(closed))


@router.get("/api/v1/coupons/{coupon_id}/waiting-room", response_model=RoomView,
            responses=responses(400, 401, 503))
async def waiting_room(coupon_id: str, user: User, request: Request) -> RoomView:
    driver = _driver(request)
    seen = await driver.run(room_status(coupon_id, user, driver.now_ms()))
    issued = seen.state == IssueOutcome.ISSUED and seen.request_id is not None
    return RoomView(state=seen.state, position=seen.position, size=seen.size,
                    eta_s=seen.eta_s, admission_rate=seen.admission_rate,
                    request_id=seen.request_id,
                    status_url=status_url(coupon_id, seen.request_id)
                    if issued and seen.request_id else None)


@router.get("/api/v1/users/me/coupons", response_model=list[HeldCouponView],
            responses=responses(400, 401, 503))
async def my_coupons(user: User, request: Request) -> list[HeldCouponView]:
    driver = _driver(request)
    held = await driver.run(coupons_held(user, driver.now_ms()))
    return [HeldCouponView(code=c.code, coupon_id=c.coupon_id, status=c.status.value,
                           order_id=c.order_id, issued_at_ms=c.issued_at_ms,
                           expires_at_ms=c.expires_at_ms) for c in held]


@router.post("/api/v1/orders/{order_id}/apply-coupon", response_model=ApplyAnswer,
             responses=responses(400, 401, 403, 404, 409, 410, 413, 422, 503))
async def apply(order_id: str, body: ApplyBody, user: User, request: Request) -> ApplyAnswer:
    driver = _driver(request)
    result = await driver.run(apply_coupon(ApplyRequest(user, order_id, body.code, body.amount),
                                           driver.now_ms()))
    if result.outcome in _APPLY_REFUSED:
        status, title = _APPLY_REFUSED[result.outcome]
        raise Problem(status, result.outcome.value.lower().replace("_", "-"), title,
                      headers={"Retry-After": "1"} if result.outcome is ApplyOutcome.LOCKED
                      else None)
    return ApplyAnswer(outcome=result.outcome.value, code=result.code, order_id=result.order_id,
                       original=result.original, discount=result.discount, final=result.final)


@router.post("/api/v1/orders/{order_id}/cancel-coupon", response_model=CancelAnswer,
             responses=responses(400, 401, 413, 422, 503))
async def cancel(order_id: str, body: CancelBody, user: User, request: Request) -> CancelAnswer:
    """Give the order's coupon back; cancelling again answers ``released: false``."""
    driver = _driver(request)
    validate_id("coupon code", body.code)
    result = await driver.run(release_coupon(user, order_id, body.code, driver.now_ms()))
    return CancelAnswer(released=result.released,
                        status=result.status.value if result.status is not None else None)


@router.post("/api/v1/admin/coupons", status_code=201, response_model=WarmupAnswer,
             dependencies=[Admin], responses=responses(400, 401, 403, 409, 413, 422, 503))
async def define_event(body: EventBody, request: Request) -> WarmupAnswer:
    """Define and warm up an event; the scheduler opens it at ``starts_at_ms``."""
    outcome = await _driver(request).run(warm_up_fresh(CouponEvent(**body.model_dump())))
    if outcome is WarmupOutcome.STARTED:
        raise Problem(409, "already-started", "The event has started: nothing was changed")
    return WarmupAnswer(coupon_id=body.coupon_id, outcome=outcome.value)


@router.get("/health", responses=responses(503))
async def health(request: Request) -> dict[str, str]:
    """Ready: Redis and the database both answer, and the worker in this process (if
    any) is not compensating every coupon it decides (503 problem otherwise)."""
    driver = _driver(request)
    await driver.execute(Command("PING"))
    await driver.execute(DbCall("ping"))
    worker = getattr(request.app.state, "worker", None)
    failing = worker.compensating_only() if worker is not None else []
    if failing:
        raise Problem(503, "degraded", "The worker compensates every coupon it decides",
                      f"coupon {', '.join(failing)}: every decision so far is a compensation; "
                      "users are told FAILED (does the database hold another event's "
                      "coupons under this id?)")
    return {"redis": "ok", "database": "ok"}


@router.get("/livez")
async def livez() -> dict[str, bool]:
    """Alive: the process answers, with no I/O (also the benchmark's bare route)."""
    return {"ok": True}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    state: Any = request.app.state
    body = await state.metrics.render(state.driver, state.gateway)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
