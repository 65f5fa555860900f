"""How a service instance is configured: by arguments, or from the environment."""

import math
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum

from couponsim.codes import CouponCodes
from couponsim.connection import DEFAULT_REDIS_URL
from couponsim.errors import InvalidInput
from couponsim.flows.gateway import Gateway
from couponsim.persistence.database import DEFAULT_DATABASE_URL
from couponsim.resilience.rate_limiter import RateLimiter, RateLimiterConfig
from couponsim.resilience.time_limiter import TimeLimiter

ADMIN_TOKEN_ENV = "COUPONSIM_ADMIN_TOKEN"
JWT_KEY_ENV = "COUPONSIM_JWT_KEY"
SECRET_ENV = "COUPONSIM_SECRET"


class IdentityMode(StrEnum):
    HEADER = "header"
    """The design's mode: an API gateway in front has authenticated the user and
    passes ``X-User-ID``; the service only validates it."""
    JWT = "jwt"
    """The service verifies a signed token (``Authorization: Bearer``) itself; the
    user is its ``sub`` claim."""


class StreamVariant(StrEnum):
    HARDENED = "hardened"
    """Subscribe first (one subscriber per process, fanning out by request id), then read."""
    DESIGN = "design"
    """As written: read, then subscribe this connection to the coupon's shared channel
    and filter it; kept to show its flaws."""


@dataclass(frozen=True)
class ServiceConfig:
    redis_url: str = DEFAULT_REDIS_URL
    db_url: str = DEFAULT_DATABASE_URL
    identity: IdentityMode = IdentityMode.HEADER
    jwt_key: str = ""
    """The HS256 secret, or the PEM public key for RS256/ES256 (JWT mode)."""
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    secret: str = ""
    """Keys the request ids, status proofs (keyed.py) and coupon codes (couponsim.codes);
    every process of a deployment (service instances, workers) must share it. Empty: a
    random one for this process and the worker it starts (one instance, or the tests)."""
    proof_ttl_s: int = 600
    """How long the proof in a 202's Location opens its status stream (the document keeps
    a PROCESSING status for 10 minutes)."""
    admin_token: str = ""
    """Bearer token of the admin routes; empty means they refuse everyone."""
    stream: StreamVariant = StreamVariant.HARDENED
    stream_timeout_s: float = 300.0
    """The design's five minutes: a stream that has seen no final state ends then."""
    heartbeat_s: float = 15.0
    """A comment line this often keeps proxies from closing an idle stream."""
    max_body_bytes: int = 16 * 1024
    """Larger bodies are refused (413) before they are parsed."""
    user_limit: int = 0
    """Issue requests per user per ``user_period_ms``, shared by every instance through
    Redis; 0 turns the per-user limit off."""
    user_period_ms: int = 1000
    coalesce: bool = True
    """Send the single Redis calls of concurrent requests in one pipeline per turn of
    the event loop (drivers/aio.py); off only to measure what it brings."""
    sold_out_flag: bool = True
    """Answer a fresh request for a coupon this instance saw sold out without asking
    Redis (sold_out.py). Only with the hardened stream, whose hub clears the flag when
    stock comes back; off only to measure what it brings."""
    rate_limit_per_s: int = 0
    """This instance's own budget of issue calls a second (the gateway's rate limiter,
    resilience4j's semantics, refusing at once); those over it go to the waiting room.
    Its one-second cycles start on the wall clock's whole seconds. 0: no limit."""
    time_limit_ms: float = 1000.0
    """The gateway's time limiter: an issue call slower than this counts as a failure
    for the breaker and sends the user to the room (resilience4j's default, 1 s)."""

    def __post_init__(self) -> None:
        try:  # the command line hands in plain strings
            object.__setattr__(self, "identity", IdentityMode(self.identity))
            object.__setattr__(self, "stream", StreamVariant(self.stream))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if not self.secret:
            object.__setattr__(self, "secret", secrets.token_hex(32))
        if self.proof_ttl_s < 1:
            raise InvalidInput("the status proof must live at least 1 s")
        if self.identity is IdentityMode.JWT and not self.jwt_key:
            raise InvalidInput(f"JWT identity needs a key (set {JWT_KEY_ENV})")
        if self.stream_timeout_s <= 0 or self.heartbeat_s <= 0 or self.max_body_bytes < 1:
            raise InvalidInput("stream timeout, heartbeat and body limit must be positive")
        if self.user_limit < 0 or self.user_period_ms < 1:
            raise InvalidInput("the per-user limit must be >= 0 per a period of >= 1 ms")
        if self.rate_limit_per_s < 0:
            raise InvalidInput(f"the rate limit must be >= 0 a second, got "
                               f"{self.rate_limit_per_s}")
        if not 0 < self.time_limit_ms < math.inf:
            raise InvalidInput(f"the time limit must be above 0 ms, got {self.time_limit_ms}")

    def gateway(self) -> Gateway:
        """The gateway of one instance: its breaker, its limiters and the waiting room
        behind them."""
        limiter = None if not self.rate_limit_per_s else RateLimiter(RateLimiterConfig(
            limit_for_period=self.rate_limit_per_s, refresh_period_s=1.0, timeout_s=0.0))
        return Gateway(limiter=limiter, time_limiter=TimeLimiter(self.time_limit_ms / 1000))

    def codes(self) -> CouponCodes:
        """The coupon codes this deployment's consumers make, keyed with its secret."""
        return CouponCodes(self.secret.encode())

    @classmethod
    def from_env(cls, **given: object) -> "ServiceConfig":
        """The config with secrets from the environment, never from the command line
        (where ``ps`` would show them)."""
        hidden = {"admin_token": os.environ.get(ADMIN_TOKEN_ENV, ""),
                  "jwt_key": os.environ.get(JWT_KEY_ENV, ""),
                  "secret": os.environ.get(SECRET_ENV, "")}
        return cls(**(hidden | given))  # type: ignore[arg-type]
