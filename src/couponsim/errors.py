"""Typed errors: every refusal a caller can act on has its own class.

Errors about the caller's input (:class:`InvalidInput` and its kin,
:class:`UnknownCoupon`, :class:`RequestIdConflict`) are raised before anything
is written. :class:`RedisUnavailable` and :class:`DatabaseUnavailable` can
come mid-flow; what a flow leaves behind then is what the invariant checker
and the consumers' redelivery are for.
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


class UnknownRequest(CouponsimError, LookupError):
    """No status is kept for this request: never issued, or its record has expired."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"unknown request {request_id!r}: never issued, or long expired")
        self.request_id = request_id


class RequestIdConflict(CouponsimError):
    """A request ID was reused for a different user: replaying it would leak another answer."""

    def __init__(self, request_id: str, user_id: str) -> None:
        super().__init__(
            f"request {request_id!r} was already used by another user than {user_id!r}"
        )
        self.request_id = request_id
        self.user_id = user_id


class RedisUnavailable(CouponsimError, ConnectionError):
    """The Redis named by a URL did not answer, or refused the connection's settings."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot use Redis at {url}: {reason}")
        self.url = url


class DatabaseUnavailable(CouponsimError, ConnectionError):
    """The database did not answer or refused the connection: worth retrying."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database at {url} did not answer: {reason}")
        self.url = url


class PersistenceError(CouponsimError):
    """The database refused a write for good (a constraint, bad data): retrying will not help."""


class InjectedCrash(CouponsimError):
    """Raised on purpose at a named point, to test what a crash there leaves behind."""

    def __init__(self, point: str) -> None:
        super().__init__(f"injected crash at {point}")
        self.point = point


class UnknownRedisUrl(InvalidInput):
    """A Redis URL with a scheme this package does not know."""


class UnknownDatabaseUrl(InvalidInput):
    """A database URL that is malformed or names a database this package does not support."""
