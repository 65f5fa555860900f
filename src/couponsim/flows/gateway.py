"""The gateway in front of the issue flow: rate limiter, circuit breaker, time
limiter, and the waiting room as the fallback of all three.

In the seed's design a request that finds the breaker closed again goes
straight to Redis while earlier users still wait in the room: late arrivals
overtake. The hardened gateway sends a request to the back of the room while
anyone is waiting there.

The breaker and limiters are in-process state machines told the time by the
driver (``Now``), so the gateway runs alike in wall time and virtual time.
What counts as a failure for the breaker: an error or a timeout. SOLD_OUT and
DUPLICATE are answers. A request that timed out may still have been issued;
it joins the room with the same request id, and its admission replays the
idempotent issue script, which answers ISSUED again rather than a second coupon.
"""

from dataclasses import dataclass, field, replace
from enum import StrEnum

from couponsim.effects import Command, Now, Pause
from couponsim.errors import InvalidInput, RequestIdConflict, UnknownCoupon
from couponsim.flows import Flow, Variant
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest, IssueResult, issue
from couponsim.flows.status import still_issued
from couponsim.flows.throttle import SharedLimit, acquire_shared
from couponsim.flows.waiting_room import (
    FINAL_STATES,
    Admission,
    admit,
    admit_seed,
    join_room,
    join_room_seed,
)
from couponsim.keys import CouponKeys
from couponsim.resilience.breaker import BreakerState, CircuitBreaker
from couponsim.resilience.rate_limiter import RateLimiter
from couponsim.resilience.time_limiter import TimeLimiter
from couponsim.sold_out import SoldOutFlags

CALLER_ERRORS = (InvalidInput, UnknownCoupon, RequestIdConflict)
"""Errors that say the request was wrong: they neither open nor close the breaker."""


class Path(StrEnum):
    """How a request went through the gateway."""

    DIRECT = "direct"
    LIMITED = "queued: rate limited"
    BREAKER_OPEN = "queued: breaker open"
    TIMED_OUT = "queued: timed out"
    BEHIND_WAITERS = "queued: others were waiting"
    EARLY = "queued: before the start"
    REFUSED = "queued: refused (the seed's fallback takes every exception)"
    SOLD_OUT_FLAG = "answered by the sold-out flag"


@dataclass
class Gateway:
    """One service instance's gateway state."""

    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    limiter: RateLimiter | None = None
    """This instance's own budget (in-process)."""
    shared_limit: SharedLimit | None = None
    """A budget shared by every instance (kept in Redis)."""
    time_limiter: TimeLimiter = field(default_factory=TimeLimiter)
    variant: Variant = Variant.HARDENED
    """Which issue flow runs behind the gateway."""
    queue_behind_waiters: bool = True
    """Send requests to the room while anyone waits there (False: the seed's design,
    where late arrivals overtake)."""
    sold_out: SoldOutFlags | None = None
    """Coupons this instance saw sold out; a fresh request for one is answered SOLD_OUT
    without Redis. None (every request asks Redis) unless something clears the flags
    when stock comes back, as the service's status hub does."""


@dataclass(frozen=True)
class GatewayAnswer:
    request_id: str
    path: Path
    outcome: IssueOutcome | None = None
    """The issue answer when the request went straight through."""
    room_state: str | None = None
    """What the room answered: WAITING (with a position), or an answer."""
    position: int = 0

    @property
    def final(self) -> bool:
        """Does the user know the outcome now, without waiting in the room?"""
        return self.outcome is not None or self.room_state in FINAL_STATES


def gateway_issue(gateway: Gateway, request: IssueRequest, shuffle: int = 0,
                  fresh: bool = False, queued_since_ms: int | None = None
                  ) -> Flow[GatewayAnswer]:
    """One issue request through the gateway; ``shuffle`` orders the pre-queue if it waits.

    Whatever the path, a user who waits keeps their arrival time as their place.
    ``fresh``: the request id was minted for this call, so there is no earlier
    answer to replay and a sold-out flag may answer it (a retried id must reach
    the script, which replays what it answered first). ``queued_since_ms``: when the
    request reached the service, if it waited for an instance before this flow ran
    (the model's instances): the time limiter counts that wait too, so a request that
    waited past the limit times out without calling Redis.
    """
    if gateway.variant is Variant.SEED:
        return (yield from _gateway_issue_seed(gateway, request))
    flags = gateway.sold_out
    if flags is not None and fresh and request.coupon_id in flags:
        return GatewayAnswer(request.request_id, Path.SOLD_OUT_FLAG,
                             outcome=IssueOutcome.SOLD_OUT)
    epoch = flags.epoch(request.coupon_id) if flags is not None else 0
    arrived_ms = now_ms = yield Now()
    if gateway.shared_limit is not None and not (
            yield from acquire_shared(gateway.shared_limit, now_ms)).allowed:
        return (yield from _queue(request, Path.LIMITED, arrived_ms, shuffle))
    if gateway.limiter is not None:
        permit = gateway.limiter.acquire(now_ms / 1000)
        if not permit.granted:
            return (yield from _queue(request, Path.LIMITED, arrived_ms, shuffle))
        if permit.wait_s:
            yield Pause(permit.wait_s)
            now_ms = yield Now()
    if not gateway.breaker.try_acquire(now_ms / 1000):
        return (yield from _queue(request, Path.BREAKER_OPEN, arrived_ms, shuffle))
    timed_from_ms = now_ms if queued_since_ms is None else queued_since_ms
    if gateway.time_limiter.timed_out(timed_from_ms / 1000, now_ms / 1000):
        gateway.breaker.record(now_ms / 1000, (now_ms - timed_from_ms) / 1000, failed=True)
        return (yield from _queue(request, Path.TIMED_OUT, arrived_ms, shuffle))
    # "Anyone waiting in the room?" is asked by the issue script itself, in the same
    # call: one script call a press (and one a loop turn, coalesced), not two.
    result = yield from _guarded(
        gateway, issue(request, now_ms, behind_waiters=gateway.queue_behind_waiters), now_ms)
    if result.outcome is IssueOutcome.WAITERS:   # the script decided nothing
        gateway.breaker.release_permission()
        return (yield from _queue(request, Path.BEHIND_WAITERS, arrived_ms, shuffle))
    finished_ms = yield Now()
    late = gateway.time_limiter.timed_out(timed_from_ms / 1000, finished_ms / 1000)
    gateway.breaker.record(finished_ms / 1000, (finished_ms - timed_from_ms) / 1000,
                           failed=late)
    if late:
        return (yield from _queue(request, Path.TIMED_OUT, arrived_ms, shuffle))
    if result.outcome is IssueOutcome.NOT_ACTIVE:
        # Before the start the room's pre-queue takes them; after the end it says so.
        return (yield from _queue(request, Path.EARLY, arrived_ms, shuffle))
    if flags is not None and result.outcome is IssueOutcome.SOLD_OUT:
        flags.saw_sold_out(request.coupon_id, epoch)
    return GatewayAnswer(request.request_id, Path.DIRECT, outcome=result.outcome)


def settle_held(answer: GatewayAnswer, coupon_id: str) -> Flow[GatewayAnswer]:
    """What to tell a user a closed or sold-out room answered ISSUED without taking them
    in: they hold a coupon already (a call that outlived the time limiter after the
    script issued it; or a double click after the first was issued). Not a place in
    line: pointed at the room, they would poll a room that never knew them. This
    request's own coupon is followed on its status; a coupon of another of the user's
    requests makes this one a duplicate."""
    if answer.room_state != IssueOutcome.ISSUED:
        return answer
    (issued,) = yield from still_issued(coupon_id, [answer.request_id])
    return replace(answer, room_state=None,
                   outcome=IssueOutcome.ISSUED if issued else IssueOutcome.DUPLICATE)


def _guarded(gateway: Gateway, call: Flow[IssueResult], since_ms: float) -> Flow[IssueResult]:
    """The issue call inside the breaker's permission. A caller's mistake gives the
    permission back (resilience4j's ignoreExceptions): counted as failures, a client
    sending unknown coupons could open the breaker for everyone. Any other exception
    is a failure recorded with the time since ``since_ms``."""
    try:
        return (yield from call)
    except CALLER_ERRORS:
        gateway.breaker.release_permission()
        raise
    except Exception:
        finished_ms = yield Now()
        gateway.breaker.record(finished_ms / 1000, (finished_ms - since_ms) / 1000, failed=True)
        raise


def _gateway_issue_seed(gateway: Gateway, request: IssueRequest) -> Flow[GatewayAnswer]:
    """The seed's ``@CircuitBreaker(fallback) @RateLimiter @TimeLimiter issueCoupon``
    (docs/seed_trace.md S37-S43), in resilience4j's aspect order: the breaker's
    permission first, then the rate limiter, then the call under the time limiter.

    The breaker records every exception (its default), and in the document a refusal
    is an exception: NOT_ACTIVE, DUPLICATE and SOLD_OUT count as failures, as do a
    rate-limit refusal and a timeout. The fallback takes every exception, so each of
    them sends the user to the room (``join_room_seed``), breaker OPEN included.
    """
    now_ms = yield Now()
    if not gateway.breaker.try_acquire(now_ms / 1000):
        return (yield from _queue_seed(request, Path.BREAKER_OPEN, now_ms))
    if gateway.limiter is not None:
        permit = gateway.limiter.acquire(now_ms / 1000)
        if not permit.granted:   # RequestNotPermitted, recorded by the breaker around it
            gateway.breaker.record(now_ms / 1000, 0.0, failed=True)
            return (yield from _queue_seed(request, Path.LIMITED, now_ms))
        if permit.wait_s:
            yield Pause(permit.wait_s)
    started_ms = yield Now()
    result = yield from _guarded(gateway, ISSUE_FLOWS[Variant.SEED](request, started_ms), now_ms)
    finished_ms = yield Now()
    late = gateway.time_limiter.timed_out(started_ms / 1000, finished_ms / 1000)
    refused = result.outcome is not IssueOutcome.ISSUED
    gateway.breaker.record(finished_ms / 1000, (finished_ms - now_ms) / 1000,
                           failed=late or refused)
    if late:
        return (yield from _queue_seed(request, Path.TIMED_OUT, finished_ms))
    if refused:
        path = Path.EARLY if result.outcome is IssueOutcome.NOT_ACTIVE else Path.REFUSED
        return (yield from _queue_seed(request, path, finished_ms))
    return GatewayAnswer(request.request_id, Path.DIRECT, outcome=result.outcome)


def _queue_seed(request: IssueRequest, path: Path, now_ms: int) -> Flow[GatewayAnswer]:
    answer = yield from join_room_seed(request.coupon_id, request.user_id, now_ms)
    return GatewayAnswer(request.request_id, path, room_state=answer.state,
                         position=answer.position)


def admission_round(gateway: Gateway, coupon_id: str, batch: int) -> Flow[Admission | None]:
    """One tick of the admission job: admit a batch while the system is healthy.

    The batch goes through the breaker like any call (as its probe when OPEN, so
    the breaker half-opens and closes again without direct traffic) and counts
    as a failure when it outlives the time limiter's budget. None when the room
    is empty, the event has not started (the admitted would only be put back in
    line, and a user following the room would read ADMITTED, then WAITING again)
    or the breaker refused.
    """
    if gateway.variant is Variant.SEED:
        # S44-S45: isSystemHealthy() (body not shown) read as "the breaker is closed";
        # the job calls the issue service directly, not through the breaker.
        if gateway.breaker.state is not BreakerState.CLOSED:
            return None
        return (yield from admit_seed(coupon_id, (yield Now()), batch))
    keys = CouponKeys(coupon_id)
    if not (yield Command("ZCARD", (keys.waiting,))):
        return None
    started_ms = yield Now()
    if started_ms < int((yield Command("HGET", (keys.info, "starts_at_ms"))) or 0):
        return None
    if not gateway.breaker.try_acquire(started_ms / 1000):
        return None
    try:
        admission = yield from admit(coupon_id, batch, started_ms)
    except Exception:
        finished_ms = yield Now()
        gateway.breaker.record(finished_ms / 1000, (finished_ms - started_ms) / 1000, True)
        raise
    finished_ms = yield Now()
    gateway.breaker.record(finished_ms / 1000, (finished_ms - started_ms) / 1000,
                           gateway.time_limiter.timed_out(started_ms / 1000, finished_ms / 1000))
    return admission


def _queue(request: IssueRequest, path: Path, arrived_ms: int, shuffle: int) -> Flow[GatewayAnswer]:
    answer = yield from join_room(request.coupon_id, request.user_id, request.request_id,
                                  arrived_ms, shuffle)
    return GatewayAnswer(request.request_id, path, room_state=answer.state,
                         position=answer.position)
