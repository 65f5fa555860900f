"""Typed errors: every refusal a caller can act on has its own class.

Errors about the caller's input (:class:`InvalidInput` and its kin,
:class:`UnknownCoupon`, :class:`RequestIdConflict`) are raised before anything
is written. :class:`RedisUnavailable` and :class:`DatabaseUnavailable` can
come mid-flow; what a flow leaves behind then is what the invariant checker
and the consumers' redelivery are for.
"""


class CouponsimError(Exception):
    """Base class of every error this package raises on purpose.

    The errors that carry fields keep them as their ``args`` and build their message
    in ``__str__``: SimPy re-creates an exception as ``type(e)(*e.args)`` when it
    passes it from one process to another, and that must give the same error back.
    """


class InvalidInput(CouponsimError, ValueError):
    """A value supplied by the caller is malformed; nothing was sent to Redis."""


class InvalidId(InvalidInput):
    """An ID that would go into a Redis key is malformed."""


class InvalidChoice(InvalidInput):
    """A field that takes one of a few named values got another.

    It keeps the field, the value and the choices, so a caller that knows where the
    field sits (a scenario's section) can name it in full without parsing a message.
    """

    def __init__(self, field: str, value: object, allowed: tuple[str, ...]) -> None:
        super().__init__(field, value, allowed)
        self.field = field
        self.value = value
        self.allowed = allowed

    def __str__(self) -> str:
        return f"{self.field} must be one of {', '.join(self.allowed)}, got {self.value!r}"


class InvalidEventConfig(InvalidInput):
    """A coupon event definition is inconsistent (negative stock, end before start...)."""


class UnknownCoupon(CouponsimError, LookupError):
    """No event was warmed up for this coupon ID."""

    def __init__(self, coupon_id: str) -> None:
        super().__init__(coupon_id)
        self.coupon_id = coupon_id

    def __str__(self) -> str:
        return f"unknown coupon {self.coupon_id!r}: no event was warmed up for it"


class CouponHasRows(CouponsimError):
    """A new event for a coupon ID whose coupons the database already holds: rows of
    another instance of the event (a simulation run on the same database). Warming it
    up would let users win in Redis while the database refuses their coupons as over
    the stock, so every one of them would end compensated."""

    def __init__(self, coupon_id: str, rows: int) -> None:
        super().__init__(coupon_id, rows)
        self.coupon_id = coupon_id
        self.rows = rows

    def __str__(self) -> str:
        return (f"coupon {self.coupon_id!r} already has {self.rows:,} coupons in the "
                "database from another event instance (a simulation run on the same "
                "database?): use a new coupon id or another database")


class UnknownRequest(CouponsimError, LookupError):
    """No status is kept for this request: never issued, or its record has expired."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id

    def __str__(self) -> str:
        return f"unknown request {self.request_id!r}: never issued, or long expired"


class RequestIdConflict(CouponsimError):
    """A request ID was reused for a different user: replaying it would leak another answer."""

    def __init__(self, request_id: str, user_id: str) -> None:
        super().__init__(request_id, user_id)
        self.request_id = request_id
        self.user_id = user_id

    def __str__(self) -> str:
        return (f"request {self.request_id!r} was already used by another user than "
                f"{self.user_id!r}")


class RedisUnavailable(CouponsimError, ConnectionError):
    """The Redis named by a URL did not answer, or refused the connection's settings."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot use Redis at {self.url}: {self.reason}"


class NoRedisServer(CouponsimError, FileNotFoundError):
    """A ``local://`` Redis URL asks for a private redis-server and PATH holds none."""

    def __str__(self) -> str:
        return ("a local:// Redis URL starts a private redis-server, and there is none on "
                "PATH: install one (conda install -c conda-forge redis-server, "
                "apt-get install redis-server, or brew install redis) or use fake://NAME")


class DatabaseUnavailable(CouponsimError, ConnectionError):
    """The database did not answer or refused the connection: worth retrying."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"database at {self.url} did not answer: {self.reason}"


class PersistenceError(CouponsimError):
    """The database refused a write for good (a constraint, bad data): retrying will not help."""


class InjectedCrash(CouponsimError):
    """Raised on purpose at a named point, to test what a crash there leaves behind."""

    def __init__(self, point: str) -> None:
        super().__init__(point)
        self.point = point

    def __str__(self) -> str:
        return f"injected crash at {self.point}"


class UnknownRedisUrl(InvalidInput):
    """A Redis URL with a scheme this package does not know."""


class UnknownDatabaseUrl(InvalidInput):
    """A database URL that is malformed or names a database this package does not support."""


class MissingExtra(CouponsimError, ImportError):
    """A command needs an optional extra that is not installed (``pip install -e '.[X]'``)."""

    def __init__(self, extra: str, reason: str) -> None:
        super().__init__(extra, reason)
        self.extra = extra
        self.reason = reason

    def __str__(self) -> str:
        return (f"{self.reason}; install the {self.extra!r} extra: "
                f"pip install -e '.[{self.extra}]'")


class SchedulerUnavailable(CouponsimError, ConnectionError):
    """The Dask scheduler named by an address did not answer: no sweep run was started."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(address, reason)
        self.address = address
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot reach the Dask scheduler at {self.address}: {self.reason}"
