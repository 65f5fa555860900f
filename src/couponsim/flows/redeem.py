"""Applying an issued coupon at checkout, and giving it back when the order is cancelled.

The seed flow trusts the Redis cache for ownership and a lock (SET NX EX,
released by a plain DEL) for exclusivity, then reads the row, judges it and
writes it blindly: a database write slower than the lock's lifetime lets a
second order in, and both use the coupon. The hardened flow keeps a lock
only to spare the database, owns it by a token and releases it by
compare-and-delete; correctness rests on the database's compare-and-set.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from couponsim.effects import Command, DbCall, Pipeline, Script
from couponsim.flows import Flow, Variant
from couponsim.ids import validate_id, validate_ms
from couponsim.keys import CouponKeys, redemption_lock_key, seed_lock_key, user_coupons_key
from couponsim.pricing import (
    ApplyOutcome,
    ApplyRequest,
    ApplyResult,
    CouponView,
    judge,
    refused,
)
from couponsim.records import CouponStatus, HeldCoupon

SEED_LOCK_TTL_S = 10
"""The seed's lock lifetime, as written (SET NX EX 10)."""


@dataclass(frozen=True)
class ReleaseResult:
    code: str
    order_id: str
    status: CouponStatus | None
    """The coupon's state after the release; None when the order did not hold it."""

    @property
    def released(self) -> bool:
        return self.status is not None


def cache_entry(coupon_id: str, status: CouponStatus) -> str:
    """The value of one code in ``user:coupons:{U}``."""
    return json.dumps({"coupon": coupon_id, "status": status.value})


def cached_coupon(value: str) -> str | None:
    """The coupon of one ``user:coupons:{U}`` value, or None for a value in another
    shape (the seed's schema reading stores an issue time there)."""
    try:
        entry = json.loads(value)
    except ValueError:
        return None
    return entry.get("coupon") if isinstance(entry, dict) else None


def apply_coupon(request: ApplyRequest, now_ms: int, lock_token: str | None = None,
                 lock_ttl_ms: int = SEED_LOCK_TTL_S * 1000) -> Flow[ApplyResult]:
    """The hardened apply: token lock, database compare-and-set, then cache and event.

    The lock's token names its holder; by default the order, since a second
    attempt of the same order is the same checkout.
    """
    validate_ms("now_ms", now_ms)
    lock_token = validate_id("lock token", lock_token or request.order_id)
    lock = redemption_lock_key(request.code)
    if not (yield Command("SET", (lock, lock_token, "NX", "PX", lock_ttl_ms))):
        return refused(ApplyOutcome.LOCKED, request)
    try:
        result: ApplyResult = yield DbCall("apply_coupon", (request, now_ms))
    except Exception:
        yield Script("unlock", (lock,), (lock_token,))
        raise
    yield Script("unlock", (lock,), (lock_token,))
    if result.applied:
        view: CouponView = yield DbCall("find_coupon", (request.code,))
        yield from _announce(view, CouponStatus.USED, request.order_id, "APPLIED", now_ms)
    return result


def apply_coupon_seed(request: ApplyRequest, now_ms: int,
                      lock_ttl_s: int = SEED_LOCK_TTL_S) -> Flow[ApplyResult]:
    """The seed apply as written (docs/seed_trace.md S51-S58): cache ownership, a lock
    (SET NX EX), read, judge, blind write, cache, event, and the lock released last
    by a plain DEL, whoever holds it by then."""
    validate_ms("now_ms", now_ms)
    if not (yield Command("HEXISTS", (user_coupons_key(request.user_id), request.code))):
        return refused(ApplyOutcome.NOT_OWNED, request)
    lock = seed_lock_key(request.code)
    if not (yield Command("SET", (lock, "locked", "NX", "EX", lock_ttl_s))):
        return refused(ApplyOutcome.LOCKED, request)
    try:
        view: CouponView | None = yield DbCall("find_coupon", (request.code,))
        result = judge(view, request, now_ms)
        if result.applied and view is not None:
            yield DbCall("mark_used_blindly", (request, result, now_ms))
            yield Command("HSET", (user_coupons_key(view.user_id), view.code,
                                   cache_entry(view.coupon_id, CouponStatus.USED)))
            yield Command("PUBLISH", (CouponKeys(view.coupon_id).usage_channel,
                                      _usage(view, CouponStatus.USED, request.order_id,
                                             "APPLIED", now_ms)))
    except Exception:
        yield Command("DEL", (lock,))   # the finally block
        raise
    yield Command("DEL", (lock,))
    return result


def release_coupon(user_id: str, order_id: str, code: str, now_ms: int) -> Flow[ReleaseResult]:
    """Give the coupon of a cancelled (or refunded) order back, exactly once."""
    validate_id("user", user_id)
    validate_id("order", order_id)
    validate_ms("now_ms", now_ms)
    status = yield DbCall("release_coupon", (user_id, order_id, code, now_ms))
    if status is not None:
        view: CouponView = yield DbCall("find_coupon", (code,))
        yield from _announce(view, status, order_id, "RELEASED", now_ms)
    return ReleaseResult(code, order_id, status)


def coupons_held(user_id: str, now_ms: int) -> Flow[list[HeldCoupon]]:
    """Every coupon the user holds, of every event, from the database: the record the
    checkout judges by (the Redis cache can be behind the consumers, or gone after a
    restart without persistence). Requests not yet persisted are not coupons yet:
    their status stream says when they become one. A coupon past its validity reads
    EXPIRED at once, as the checkout judges it, not only once the sweep has marked it."""
    validate_id("user", user_id)
    validate_ms("now_ms", now_ms)
    coupons: list[HeldCoupon] = yield DbCall("coupons_held", (user_id,))
    return [replace(c, status=CouponStatus.EXPIRED)
            if c.status is CouponStatus.ACTIVE and c.expires_at_ms <= now_ms else c
            for c in coupons]


def lock_expires(code: str, variant: Variant = Variant.HARDENED) -> Flow[None]:
    """The moment the checkout lock's TTL runs out under a slow write: the key is gone.
    Races are explored with this as an actor of its own, so any interleaving of the
    expiry with the applies can be tried."""
    yield Command("DEL", (seed_lock_key(code) if variant is Variant.SEED
                          else redemption_lock_key(code),))


def _announce(view: CouponView, status: CouponStatus, order_id: str, event: str,
              now_ms: int) -> Flow[None]:
    """Bring the user's cache in line with the database, and publish the usage event."""
    message = _usage(view, status, order_id, event, now_ms)
    yield Pipeline((
        Command("HSET", (user_coupons_key(view.user_id), view.code,
                         cache_entry(view.coupon_id, status))),
        Command("PUBLISH", (CouponKeys(view.coupon_id).usage_channel, message)),
    ))


def _usage(view: CouponView, status: CouponStatus, order_id: str, event: str,
           now_ms: int) -> str:
    """The usage event's message."""
    return json.dumps({"event": event, "code": view.code, "user": view.user_id,
                       "order": order_id, "status": status.value, "at_ms": now_ms})


APPLY_FLOWS: dict[Variant, Callable[[ApplyRequest, int], Flow[ApplyResult]]] = {
    Variant.SEED: apply_coupon_seed, Variant.HARDENED: apply_coupon}
