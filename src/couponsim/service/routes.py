"""The HTTP API: each route turns a request into one flow call and its result into
an answer. Which answer means which status is decided here, in tables; what the
answer is, is decided by the flows.

- ``POST /api/v1/coupons/issue``: through the gateway. 202 + ``Location`` of the
  status stream when issued (PROCESSING), or of the waiting room when queued;
  409 DUPLICATE, 410 SOLD_OUT (the stock is gone: retrying will not help),
  403 NOT_ACTIVE (ended). The server makes the request id (keyed.py): the same
  user repeating an ``Idempotency-Key`` replays the first answer (the issue script
  keeps it); another user's same key is another request. A request without one,
  for a coupon this instance saw sold out within the last second, is answered
  410 by the gateway's flag without asking Redis: a user already holding a
  coupon then hears 410 where Redis would say 409, and after the end 410 for 403.
- ``GET /api/v1/coupons/status/{request}?proof=``: Server-Sent Events, for the
  holder of the proof in the 202's Location only (also under
  ``/api/v1/coupons/{coupon}/status/{request}``).
- ``GET /api/v1/coupons/{coupon}/waiting-room``: the caller's place and wait.
- ``GET /api/v1/users/me/coupons``: the caller's coupons, from the database.
- ``POST /api/v1/orders/{order}/apply-coupon`` and ``.../cancel-coupon``.
- ``POST /api/v1/admin/coupons``: define and warm up an event (admin token).
- ``/health`` (Redis and database answer), ``/livez`` (the process answers),
  ``/metrics`` (Prometheus).
"""

import hashlib
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.routing import Match, Route
from starlette.types import Scope

from couponsim.drivers.aio import AsyncDriver
from couponsim.effects import Command, DbCall
from couponsim.errors import UnknownRequest
from couponsim.event import CouponEvent
from couponsim.flows.gateway import Gateway, GatewayAnswer, gateway_issue, settle_held
from couponsim.flows.issue import IssueOutcome, IssueRequest
from couponsim.flows.lifecycle import WarmupOutcome, warm_up_fresh
from couponsim.flows.redeem import apply_coupon, coupons_held, release_coupon
from couponsim.flows.throttle import SharedLimit, acquire_shared
from couponsim.flows.waiting_room import PRE_QUEUE_SPREAD, room_status
from couponsim.ids import validate_id
from couponsim.pricing import ApplyOutcome, ApplyRequest
from couponsim.service.config import ServiceConfig, StreamVariant
from couponsim.service.identity import ID_SCHEMA, Admin, User, current_user, presented_user
from couponsim.service.keyed import Keyed, StatusGrant, status_location
from couponsim.service.metrics import Metrics
from couponsim.service.problem import Problem, responses
from couponsim.service.schemas import (
    ApplyAnswer,
    ApplyBody,
    CancelAnswer,
    CancelBody,
    EventBody,
    HeldCouponView,
    IssueAccepted,
    IssueBody,
    RoomView,
    WarmupAnswer,
)
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


def _driver(request: Request) -> AsyncDriver:
    driver: AsyncDriver = request.app.state.driver
    return driver


def _config(request: Request) -> ServiceConfig:
    config: ServiceConfig = request.app.state.config
    return config


def _keyed(request: Request) -> Keyed:
    keyed: Keyed = request.app.state.keyed
    return keyed


def room_url(coupon_id: str) -> str:
    return f"/api/v1/coupons/{coupon_id}/waiting-room"


IDEMPOTENCY_KEY = Header(
    description="Replays the first answer when the same user sends it again for the same "
                "coupon; one user's key never names another user's request. Empty is refused.",
    json_schema_extra=ID_SCHEMA)


async def issue_coupon(body: IssueBody, user: User, request: Request,
                       idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None
                       ) -> Response:
    """Issue one coupon. The 202's ``Location`` is the status stream (with the proof that
    lets only this user read it) or, when queued, the waiting room."""
    driver, config, keyed = _driver(request), _config(request), _keyed(request)
    metrics: Metrics = request.app.state.metrics
    gateway: Gateway = request.app.state.gateway
    coupon_id = validate_id("coupon", body.coupon_id)
    if idempotency_key is not None:
        validate_id("Idempotency-Key", idempotency_key)
    issue_request = IssueRequest(coupon_id, user,
                                 keyed.request_id(user, coupon_id, idempotency_key))
    if config.user_limit:
        limit = SharedLimit("user-" + hashlib.blake2b(user.encode(), digest_size=16).hexdigest(),
                            config.user_limit, config.user_period_ms)
        verdict = await driver.run(acquire_shared(limit, driver.now_ms()))
        if not verdict.allowed:
            metrics.answered("RATE_LIMITED")
            raise Problem(429, "rate-limited", "Too many requests from this user",
                          headers={"Retry-After": str(-(-verdict.retry_after_ms // 1000))})
    answer = await driver.run(gateway_issue(gateway, issue_request,
                                            secrets.randbelow(PRE_QUEUE_SPREAD),
                                            fresh=idempotency_key is None))
    if answer.room_state == IssueOutcome.ISSUED:
        answer = await driver.run(settle_held(answer, coupon_id))
    told = answer.outcome.value if answer.outcome is not None else answer.room_state or ""
    metrics.answered(told)
    if told in _REFUSED:
        status, code, title = _REFUSED[told]
        raise Problem(status, code, title, requestId=answer.request_id)
    return _accepted(answer, coupon_id, user, keyed)


class IssueRoute(APIRoute):
    """The issue route, which carries the crowd, without FastAPI's per-request machinery.

    FastAPI documents it from ``issue_coupon``'s signature as any route (the body model,
    the identity and Idempotency-Key headers, the answers), but the handler here calls
    ``issue_coupon`` itself: the raw body is validated by the same model, in Rust
    (``model_validate_json``), and the identity by the same function, with no
    dependency solving. Errors are raised as FastAPI's would be, in the same order
    (malformed JSON, then identity, then the body's schema), so the app's handlers
    answer them alike. In-process, with real Redis, this took the route's CPU from
    400-470 to about 300 us a request (the bare route: about 100).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return _issue_directly


async def _issue_directly(request: Request) -> Response:
    invalid: ValidationError | None = None
    try:
        body = IssueBody.model_validate_json(await request.body())
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise RequestValidationError(exc.errors(include_url=False)) from None
        invalid = exc
    headers = request.headers
    user = await current_user(request, headers.get("x-user-id"), headers.get("authorization"))
    if invalid is not None:
        raise RequestValidationError(
            [error | {"loc": ("body", *error["loc"])} for error in
             invalid.errors(include_url=False)]) from None
    return await issue_coupon(body, user, request, headers.get("idempotency-key"))


router.add_api_route("/api/v1/coupons/issue", issue_coupon, methods=["POST"], status_code=202,
                     response_model=IssueAccepted, route_class_override=IssueRoute,
                     responses=responses(400, 401, 403, 404, 409, 410, 413, 422, 429, 503))


class IssueFastPath(Route):
    """The issue route's runtime path: the same handler as :class:`IssueRoute` (which
    stays in the router and documents it), as a plain Starlette route the app tries
    first. An included FastAPI route is reached through the router's inclusion layer and
    FastAPI's per-request wrapper (two exit stacks for dependencies, which this route
    has none of); on the route that carries the crowd, those cost about as much as the
    handler's own parsing. Errors go to the app's handlers exactly as before."""

    def __init__(self) -> None:
        super().__init__("/api/v1/coupons/issue", _issue_directly, methods=["POST"],
                         include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self   # as FastAPI's routes do: the Timer labels by it
        return match, child_scope


def _accepted(answer: GatewayAnswer, coupon_id: str, user: str, keyed: Keyed) -> Response:
    """The 202, serialized here: a returned model would be validated against the
    response model and encoded again by FastAPI, on the route that carries the crowd.
    The response model still documents it."""
    if answer.outcome is IssueOutcome.ISSUED:
        location = status_location(answer.request_id,
                                   keyed.proof(answer.request_id, user, coupon_id))
        accepted = IssueAccepted(request_id=answer.request_id, status="PROCESSING",
                                 message=PROCESSING_MESSAGE, path=answer.path.value)
    else:
        location = room_url(coupon_id)
        accepted = IssueAccepted(request_id=answer.request_id, status="QUEUED",
                                 message=QUEUED_MESSAGE, room_state=answer.room_state,
                                 queue_position=answer.position, path=answer.path.value)
    return Response(accepted.model_dump_json(), 202, {"Location": location},
                    media_type="application/json")


PROCESSING_MESSAGE = "The coupon is being issued: follow Location for its status."
QUEUED_MESSAGE = "In the waiting room: follow Location for the place and the wait."

_STATUS_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}},
          "description": "status events until a final state, or timeout"},
    **responses(400, 404, 503)}
PROOF = Query(description="The proof in the 202's Location: only its holder reads this "
                          "status, until it expires. Without a valid one the answer is 404, "
                          "as for an unknown request.")


@router.get("/api/v1/coupons/status/{request_id}", response_class=EventSourceResponse,
            responses=_STATUS_DOC)
async def status_stream(request_id: str, request: Request,
                        proof: Annotated[str | None, PROOF] = None,
                        last_event_id: Annotated[str | None, Header()] = None
                        ) -> EventSourceResponse:
    """The request's status as Server-Sent Events, as the design document streams it."""
    grant = await _grant(request, request_id, proof)
    return await _stream(request, grant.coupon_id, request_id, last_event_id)


@router.get("/api/v1/coupons/{coupon_id}/status/{request_id}",
            response_class=EventSourceResponse, responses=_STATUS_DOC)
async def coupon_status_stream(coupon_id: str, request_id: str, request: Request,
                               proof: Annotated[str | None, PROOF] = None,
                               last_event_id: Annotated[str | None, Header()] = None
                               ) -> EventSourceResponse:
    """The same stream under the coupon (the path of earlier versions)."""
    grant = await _grant(request, request_id, proof)
    if grant.coupon_id != coupon_id:
        raise UnknownRequest(request_id)
    return await _stream(request, coupon_id, request_id, last_event_id)


async def _grant(request: Request, request_id: str, proof: str | None) -> StatusGrant:
    """The proof's grant, if it is valid and the caller (when named) is its user; else
    the unknown request's 404, so that nothing tells a guessed id from a taken one."""
    validate_id("request", request_id)
    grant = _keyed(request).verify(request_id, proof)
    try:
        caller = await presented_user(request)
    except Problem:
        caller = None if grant is None else "~"   # a malformed identity is no one
    if grant is None or caller not in (None, grant.user_id):
        raise UnknownRequest(request_id)
    return grant


async def _stream(request: Request, coupon_id: str, request_id: str,
                  last_event_id: str | None) -> EventSourceResponse:
    driver, config = _driver(request), _config(request)
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
    return RoomView(state=seen.state, queue_position=seen.position, queue_size=seen.size,
                    estimated_wait_time=seen.eta_s, admission_rate=seen.admission_rate,
                    request_id=seen.request_id,
                    status_url=status_location(seen.request_id, _keyed(request).proof(
                        seen.request_id, user, coupon_id))
                    if issued and seen.request_id else None)


@router.get("/api/v1/users/me/coupons", response_model=list[HeldCouponView],
            responses=responses(400, 401, 503))
async def my_coupons(user: User, request: Request) -> list[HeldCouponView]:
    driver = _driver(request)
    held = await driver.run(coupons_held(user, driver.now_ms()))
    return [HeldCouponView(coupon_code=c.code, coupon_id=c.coupon_id, status=c.status.value,
                           order_id=c.order_id, issued_at_ms=c.issued_at_ms,
                           expires_at_ms=c.expires_at_ms) for c in held]


@router.post("/api/v1/orders/{order_id}/apply-coupon", response_model=ApplyAnswer,
             responses=responses(400, 401, 403, 404, 409, 410, 413, 422, 503))
async def apply(order_id: str, body: ApplyBody, user: User, request: Request) -> ApplyAnswer:
    driver = _driver(request)
    result = await driver.run(apply_coupon(
        ApplyRequest(user, order_id, body.coupon_code, body.original_amount), driver.now_ms()))
    if result.outcome in _APPLY_REFUSED:
        status, title = _APPLY_REFUSED[result.outcome]
        raise Problem(status, result.outcome.value.lower().replace("_", "-"), title,
                      headers={"Retry-After": "1"} if result.outcome is ApplyOutcome.LOCKED
                      else None)
    return ApplyAnswer(outcome=result.outcome.value, order_id=result.order_id,
                       original_amount=result.original, discount_amount=result.discount,
                       final_amount=result.final, applied_coupon=result.code)


@router.post("/api/v1/orders/{order_id}/cancel-coupon", response_model=CancelAnswer,
             responses=responses(400, 401, 413, 422, 503))
async def cancel(order_id: str, body: CancelBody, user: User, request: Request) -> CancelAnswer:
    """Give the order's coupon back; cancelling again answers ``released: false``."""
    driver = _driver(request)
    validate_id("coupon code", body.coupon_code)
    result = await driver.run(release_coupon(user, order_id, body.coupon_code, driver.now_ms()))
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
