"""Who is calling: the user of a request, and whether a caller is an operator.

Two modes, chosen by configuration: the design's, where an API gateway has
authenticated the user and passes ``X-User-ID`` (validated here, since it goes
into Redis keys), and one where the service verifies a signed token itself
(PyJWT). Either way the user id passes the same ID rules as everywhere else,
before any key is built.
"""

import hmac
from typing import Annotated

import jwt
from fastapi import Depends, Header, Request
from pydantic import JsonValue

from couponsim.errors import InvalidId
from couponsim.ids import ID_PATTERN, MAX_ID_LENGTH, validate_id
from couponsim.service.config import IdentityMode, ServiceConfig
from couponsim.service.problem import Problem

_BEARER = "bearer "
ID_SCHEMA: dict[str, JsonValue] = {
    "pattern": f"^{ID_PATTERN}$", "minLength": 1, "maxLength": MAX_ID_LENGTH}
"""The ID rules in the OpenAPI schema, so clients (and schemathesis) know a valid user or
request id; stated, not enforced by FastAPI, so a bad one keeps its own 400 problem."""


async def _config(request: Request) -> ServiceConfig:
    # The dependencies are ``async def`` although they never await: FastAPI runs a plain
    # ``def`` dependency in a worker thread, a thread hop per request that cost the issue
    # route a third of its throughput here.
    config: ServiceConfig = request.app.state.config
    return config


def _bearer(authorization: str | None) -> str | None:
    if authorization is None or not authorization.lower().startswith(_BEARER):
        return None
    return authorization[len(_BEARER):].strip()


async def current_user(
        request: Request,
        x_user_id: Annotated[str | None, Header(
            description="the user (header identity mode)", json_schema_extra=ID_SCHEMA)]
        = None,
        authorization: Annotated[str | None, Header(description="Bearer JWT (jwt mode)")]
        = None) -> str:
    """The calling user's id, or a 401/400 problem. (The config is read here rather
    than through a sub-dependency: each dependency FastAPI solves costs the issue
    route, which carries the crowd, a share of every request.)"""
    config: ServiceConfig = request.app.state.config
    if config.identity is IdentityMode.HEADER:
        if x_user_id is None:
            raise Problem(401, "missing-identity", "X-User-ID is required")
        return _valid_user(x_user_id)
    token = _bearer(authorization)
    challenge = {"WWW-Authenticate": 'Bearer realm="couponsim"'}
    if token is None:
        raise Problem(401, "missing-identity", "A bearer token is required", headers=challenge)
    try:
        claims = jwt.decode(token, config.jwt_key, algorithms=list(config.jwt_algorithms),
                            options={"require": ["sub", "exp"]})
    except jwt.PyJWTError as exc:
        raise Problem(401, "invalid-token", "The token was refused", str(exc),
                      headers=challenge) from None
    return _valid_user(claims["sub"])


async def presented_user(request: Request) -> str | None:
    """The caller's user if the request names one (status streams need none: the proof
    names the user), validated as :func:`current_user` would."""
    config: ServiceConfig = request.app.state.config
    headers = request.headers
    named_by = "x-user-id" if config.identity is IdentityMode.HEADER else "authorization"
    if named_by not in headers:
        return None
    return await current_user(request, headers.get("x-user-id"), headers.get("authorization"))


def _valid_user(user_id: object) -> str:
    try:
        return validate_id("user", user_id)
    except InvalidId as exc:
        raise Problem(400, "invalid-user-id", "Malformed user id", str(exc)) from None


async def require_admin(config: Annotated[ServiceConfig, Depends(_config)],
                  authorization: Annotated[str | None, Header()] = None) -> None:
    """Admit an operator holding the admin token; compared in constant time."""
    if not config.admin_token:
        raise Problem(403, "admin-disabled", "No admin token is configured")
    token = _bearer(authorization)
    if token is None:
        raise Problem(401, "missing-identity", "An admin bearer token is required",
                      headers={"WWW-Authenticate": 'Bearer realm="couponsim-admin"'})
    if not hmac.compare_digest(token.encode(), config.admin_token.encode()):
        raise Problem(403, "forbidden", "Wrong admin token")


User = Annotated[str, Depends(current_user)]
Admin = Depends(require_admin)
