"""Event lifecycle: warm-up, activation and end.

The hardened flows are scripts, so a warm-up re-run by a retrying scheduler
cannot reset the stock of a running event; the seed flows are the design's
plain SETs, which can.
"""

from dataclasses import dataclass
from enum import StrEnum

from couponsim.codes import SIMULATION_CODES, CouponCodes
from couponsim.effects import Command, DbCall, Pipeline, Script
from couponsim.errors import CouponHasRows, UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.flows import Flow, Variant
from couponsim.flows.redeem import cached_coupon
from couponsim.flows.seed_queue import seed_entries
from couponsim.flows.status import parse_seed_status
from couponsim.keys import ISSUE_GROUP, SEED_ISSUE_QUEUE, SEED_STATUS_PREFIX, CouponKeys
from couponsim.records import CouponLedger

SEED_INFO_TTL_S = 2 * 3600
"""The seed caches the event's definition for 2 hours, as written (S4)."""


class WarmupOutcome(StrEnum):
    WARMED = "WARMED"
    """First warm-up of this coupon."""
    REWARMED = "REWARMED"
    """The event had not started: its definition and stock were replaced."""
    STARTED = "STARTED"
    """The event is active or ended: nothing changed."""


class EventState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


class TransitionVerdict(StrEnum):
    CHANGED = "CHANGED"
    UNCHANGED = "UNCHANGED"
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class Transition:
    verdict: TransitionVerdict
    before: EventState | None


def warm_up(event: CouponEvent) -> Flow[WarmupOutcome]:
    """Define the event and load its stock, unless it has started already."""
    keys = CouponKeys(event.coupon_id)
    fields = [item for pair in event.to_fields().items() for item in pair]
    outcome = yield Script("warmup", (keys.info, keys.active, keys.stock, keys.queue),
                           (event.stock, ISSUE_GROUP, *fields))
    return WarmupOutcome(outcome)


def warm_up_fresh(event: CouponEvent) -> Flow[WarmupOutcome]:
    """Warm up as :func:`warm_up`, refusing (``CouponHasRows``) a coupon that Redis does
    not know while the database holds coupons of it: those belong to another instance
    of the event, and the new one would compensate every winner. A coupon Redis knows
    is this instance: warming it again is :func:`warm_up`'s business."""
    keys = CouponKeys(event.coupon_id)
    if not (yield Command("EXISTS", (keys.info,))):
        ledger: CouponLedger = yield DbCall("ledger", (event.coupon_id,))
        if ledger.coupons:
            raise CouponHasRows(event.coupon_id, len(ledger.coupons))
    return (yield from warm_up(event))


def warm_up_seed(event: CouponEvent) -> Flow[WarmupOutcome]:
    """The seed's warm-up (docs/seed_trace.md S2-S5): plain writes, so the daily re-run
    of its cron (S1) resets the stock of an event that has already sold."""
    keys = CouponKeys(event.coupon_id)
    fields = [item for pair in event.to_fields().items() for item in pair]
    yield Command("SET", (keys.stock, event.stock))
    yield Command("HSET", (keys.info, *fields))
    yield Command("EXPIRE", (keys.info, SEED_INFO_TTL_S))
    yield Command("SET", (keys.active, EventState.PENDING.value))
    return WarmupOutcome.WARMED


def _transition(coupon_id: str, target: EventState,
                allowed_from: tuple[EventState, ...]) -> Flow[Transition]:
    keys = CouponKeys(coupon_id)
    verdict, before = yield Script(
        "transition", (keys.info, keys.active), (target.value, *(s.value for s in allowed_from))
    )
    if verdict == "UNKNOWN":
        raise UnknownCoupon(coupon_id)
    return Transition(TransitionVerdict(verdict), EventState(before) if before else None)


def activate(coupon_id: str) -> Flow[Transition]:
    """Open the event for issuing; an ended event is never reopened."""
    return _transition(coupon_id, EventState.ACTIVE, (EventState.PENDING,))


def end(coupon_id: str) -> Flow[Transition]:
    """Close the event; it cannot be activated again."""
    return _transition(coupon_id, EventState.ENDED, (EventState.PENDING, EventState.ACTIVE))


def activate_seed(coupon_id: str) -> Flow[None]:
    """The seed's activation scheduler (S7-S8): a plain SET of the flag, whatever came
    before, then the waiting room emptied: whoever queued before the start is gone."""
    keys = CouponKeys(coupon_id)
    yield Command("SET", (keys.active, EventState.ACTIVE.value))
    yield Command("DEL", (keys.waiting,))


def open_event(event: CouponEvent, variant: Variant) -> Flow[None]:
    """Warm up and activate, with the variant's lifecycle: the seed's plain writes,
    or the hardened scripts."""
    if variant is Variant.SEED:
        yield from warm_up_seed(event)
        yield from activate_seed(event.coupon_id)
    else:
        yield from warm_up(event)
        yield from activate(event.coupon_id)


def purge(coupon_id: str, with_database: bool = False,
          codes: CouponCodes = SIMULATION_CODES) -> Flow[int]:
    """Forget an event entirely: every key under its tag, its seed queue entries
    and, ``with_database``, its rows.

    For the workbench's scratch runs, so that a job can be replayed on the same
    Redis and database; returns how many keys, entries and rows were removed.
    ``codes``: those the run's consumers made (the seed's statuses are known as the
    event's by their code).
    """
    keys = CouponKeys(coupon_id)
    removed = 0
    for pattern in (f"coupon:*{keys.tag}*", keys.active):
        cursor = "0"
        while True:
            cursor, found = yield Command("SCAN", (cursor, "MATCH", pattern, "COUNT", 1000))
            if found:
                removed += yield Command("DEL", tuple(found))
            if str(cursor) == "0":
                break
    for raw in (yield Command("LRANGE", (SEED_ISSUE_QUEUE, 0, -1))):
        if seed_entries([raw], coupon_id):
            removed += yield Command("LREM", (SEED_ISSUE_QUEUE, 1, raw))
    removed += yield from _purge_untagged(coupon_id, codes)
    if with_database:
        removed += yield DbCall("purge_coupon", (coupon_id,))
    return removed


def _purge_untagged(coupon_id: str, codes: CouponCodes) -> Flow[int]:
    """The event's records kept under other tags: its codes in users' coupon lists, and
    the seed's COMPLETED statuses (known as the event's by their code). A seed status
    still PROCESSING names no coupon and is left alone."""
    removed = 0
    cursor = "0"
    while True:
        cursor, keys = yield Command("SCAN", (cursor, "MATCH", "user:coupons:*", "COUNT", 1000))
        for key in keys:
            cached = yield Command("HGETALL", (key,))
            mine = [code for code, value in cached.items() if cached_coupon(value) == coupon_id]
            if mine:
                removed += yield Command("HDEL", (key, *mine))
        if str(cursor) == "0":
            break
    cursor = "0"
    while True:
        cursor, keys = yield Command("SCAN", (cursor, "MATCH", f"{SEED_STATUS_PREFIX}*",
                                              "COUNT", 1000))
        for key in keys:
            request = key[len(SEED_STATUS_PREFIX):]
            raw = yield Command("GET", (key,))
            if raw is not None and parse_seed_status(request, raw).code == codes.code(
                    coupon_id, request):
                removed += yield Command("DEL", (key,))
        if str(cursor) == "0":
            return removed


def event_ids() -> Flow[list[str]]:
    """Every coupon whose event is defined in Redis, sorted: the work list of the schedulers
    and consumers of a running service, which learn of an event defined by any instance
    (SCAN walks the keyspace in steps, never blocking Redis as KEYS would)."""
    prefix, found, cursor = "coupon:info:{", set[str](), "0"
    while True:
        cursor, keys = yield Command("SCAN", (cursor, "MATCH", f"{prefix}*", "COUNT", 1000))
        found.update(key[len(prefix):-1] for key in keys
                     if key.startswith(prefix) and key.endswith("}"))
        if str(cursor) == "0":
            return sorted(found)


def follow_schedule(coupon_id: str, now_ms: int) -> Flow[Transition | None]:
    """The activation and end schedulers' step for one event: activate it once its start
    has come, end it once its end has come; None when nothing was due. Every step is
    a script that refuses a move backwards, so schedulers in several processes agree."""
    keys = CouponKeys(coupon_id)
    (starts_at, ends_at), state = yield Pipeline((
        Command("HMGET", (keys.info, "starts_at_ms", "ends_at_ms")),
        Command("GET", (keys.active,))), atomic=True)
    if starts_at is None or state is None:
        raise UnknownCoupon(coupon_id)
    if state == EventState.ENDED.value:
        return None
    if int(ends_at) and now_ms >= int(ends_at):
        return (yield from end(coupon_id))
    if state == EventState.PENDING.value and now_ms >= int(starts_at):
        return (yield from activate(coupon_id))
    return None
