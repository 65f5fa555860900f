"""Typed errors: every refusal a caller can act on has its own class.

Each error is raised before any state changes, so a caller that catches one
knows the store is as it was.
"""


class CouponsimError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInput(CouponsimError, ValueError):
    """A value supplied by the caller is malformed; nothing was sent to Redis."""


class InvalidId(InvalidInput):
    """An ID that would go into a Redis key is malformed."""


class InvalidEventConfig(InvalidInput):
    """A coupon event definition is inconsistent (negative stock, end before start...)."""


class UnknownCoupon(CouponsimError, LookupError):
    """No event was warmed up for this coupon ID."""

    def __init__(self, coupon_id: str) -> None:
        super().__init__(f"unknown coupon {coupon_id!r}: no event was warmed up for it")
        self.coupon_id = coupon_id


class RequestIdConflict(CouponsimError):
    """A request ID was reused for a different user: replaying it would leak another answer."""

    def __init__(self, request_id: str, user_id: str) -> None:
        super().__init__(
            f"request {request_id!r} was already used by another user than {user_id!r}"
        )
        self.request_id = request_id
        self.user_id = user_id


class RedisUnavailable(CouponsimError, ConnectionError):
    """The Redis named by a URL did not answer."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Redis at {url} did not answer: {reason}")
        self.url = url


class UnknownRedisUrl(InvalidInput):
    """A Redis URL with a scheme this package does not know."""
