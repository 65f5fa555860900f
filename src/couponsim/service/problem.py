"""Errors as RFC 9457 problem details (``application/problem+json``) with a typed code.

Every refusal has its own ``type`` URI and HTTP status, so a client can act on
the code without parsing prose. The mapping from the package's typed errors is
here, in one table, so that routes never pick a status themselves.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from couponsim.errors import (
    CouponHasRows,
    CouponsimError,
    DatabaseUnavailable,
    InvalidInput,
    PersistenceError,
    RedisUnavailable,
    RequestIdConflict,
    UnknownCoupon,
    UnknownRequest,
)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://couponsim.dev/problems/"


class ProblemDetail(BaseModel):
    """The body of every error answer, for the OpenAPI schema."""

    type: str
    title: str
    status: int
    detail: str = ""
    code: str
    """The machine-readable code: the last segment of ``type``."""


class Problem(Exception):
    """An error answer: raised by routes and dependencies, rendered by the handler."""

    def __init__(self, status: int, code: str, title: str, detail: str = "",
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, code, title, detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"type": TYPE_BASE + self.code, "title": self.title, "status": self.status,
                "detail": self.detail, "code": self.code, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (UnknownCoupon, 404, "unknown-coupon", "No such coupon event"),
    (UnknownRequest, 404, "unknown-request", "No such request"),
    (RequestIdConflict, 409, "request-id-conflict",
     "This request id (Idempotency-Key) belongs to another user"),
    (CouponHasRows, 409, "coupon-has-rows",
     "The database holds coupons of another event with this coupon id"),
    (InvalidInput, 400, "invalid-input", "Malformed input"),
    (RedisUnavailable, 503, "redis-unavailable", "Redis is not answering"),
    (DatabaseUnavailable, 503, "database-unavailable", "The database is not answering"),
    (PersistenceError, 500, "persistence-error", "The database refused the write"),
)


def from_error(exc: CouponsimError) -> Problem:
    """The problem a typed error of the package stands for (500 for one not in the table)."""
    for kind, status, code, title in _ERRORS:
        if isinstance(exc, kind):
            detail = "" if status >= 500 else str(exc)  # no internals in a server error
            return Problem(status, code, title, detail,
                           {"Retry-After": "1"} if status == 503 else None)
    return Problem(500, "internal", "Internal error")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: these statuses answer a problem document."""
    return {status: {"model": ProblemDetail, "content": {PROBLEM_JSON: {}},
                     "description": "a problem (RFC 9457)"} for status in statuses}


def install(app: FastAPI) -> None:
    """Render every error of the app as a problem document."""

    async def on_problem(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return exc.response()

    async def on_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CouponsimError)
        return from_error(exc).response()

    async def on_invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return Problem(400, "malformed-json", "The body is not valid JSON").response()
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                          for e in errors)
        return Problem(422, "invalid-request", "The request does not match the schema",
                       where).response()

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        # Starlette's headers are part of the answer: a 405 must say what is Allow-ed.
        return Problem(exc.status_code, code, str(exc.detail),
                       headers=dict(exc.headers or {})).response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(CouponsimError, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
