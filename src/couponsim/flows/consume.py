"""Draining the issue queue into the database: the seed consumer and the hardened one.

One call of a ``consume_*`` flow handles one batch; the loop around it (poll
interval, stop signal) belongs to the runner, so the same flow runs in a
thread, on asyncio or as a SimPy process.

Hardened order, each step safe to repeat after a crash:
read (or reclaim) -> persist in one transaction -> user cache ->
finalize script (status COMPLETED + XACK + publish, atomically).
An entry that keeps failing for good is compensated after
``max_deliveries``: its stock comes back and its user is told FAILED.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from couponsim.codes import SIMULATION_CODES, CouponCodes
from couponsim.effects import Command, DbCall, Pause, Pipeline, Script
from couponsim.errors import (
    DatabaseUnavailable,
    InjectedCrash,
    InvalidInput,
    PersistenceError,
    RedisUnavailable,
    UnknownCoupon,
)
from couponsim.event import CouponEvent
from couponsim.flows import Flow
from couponsim.flows.issue import REQUEST_RECORD_TTL_S
from couponsim.flows.redeem import cache_entry
from couponsim.flows.seed_options import DEFAULT, SeedOptions
from couponsim.flows.seed_queue import parse_seed_items
from couponsim.flows.status import RequestState, RequestStatus
from couponsim.ids import validate_id, validate_ms
from couponsim.keys import (
    ISSUE_GROUP,
    SEED_ISSUE_QUEUE,
    SEED_STATUS_CHANNEL,
    CouponKeys,
    seed_status_key,
    user_coupons_key,
)
from couponsim.records import CouponStatus, Decided, IssuedCoupon

SEED_BATCH_SIZE = 10
"""The seed consumer's LPOP count, as written."""
SEED_COMPLETED_TTL_S = 3600
"""The seed's COMPLETED status lives an hour, as written (S24)."""


class CrashPoint(StrEnum):
    """Where a test can make a consumer die, and what each leaves behind."""

    AFTER_READ = "after_read"
    """Entries delivered (hardened: pending; seed: popped), nothing written."""
    MID_BATCH = "mid_batch"
    """Half the batch written inside the transaction, which is then lost."""
    BEFORE_COMMIT = "before_commit"
    """The whole batch written inside the transaction, never committed."""
    AFTER_COMMIT = "after_commit"
    """Committed, but no status set and nothing acknowledged."""


@dataclass(frozen=True)
class ConsumerConfig:
    batch_size: int = 10
    block_ms: int | None = None
    """How long XREADGROUP waits for new entries; None: not at all (polling)."""
    claim_idle_ms: int = 30_000
    """An entry pending this long belongs to a consumer presumed dead: reclaim it."""
    max_deliveries: int = 5
    """Deliveries after which an entry the database refuses for good is compensated."""
    db_retries: int = 3
    db_retry_pause_s: float = 0.2
    """First pause after the database fails to answer; it doubles each retry."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise InvalidInput(f"batch_size must be 1 to 10000, got {self.batch_size}")
        if self.block_ms is not None and self.block_ms < 1:
            raise InvalidInput("block_ms must be at least 1 (Redis takes 0 as 'for ever')")
        if self.claim_idle_ms < 0 or self.max_deliveries < 1 or self.db_retries < 0 \
                or self.db_retry_pause_s < 0:
            raise InvalidInput("claim_idle_ms, db_retries and db_retry_pause_s must be >= 0 "
                               "and max_deliveries >= 1")


@dataclass(frozen=True)
class BatchReport:
    read: int = 0
    reclaimed: int = 0
    persisted: int = 0
    compensated: int = 0
    left_pending: int = 0
    """Refused by the database this time; redelivered later."""
    dropped: int = 0
    """Seed only: popped and then lost with a failed write."""
    discarded: int = 0
    """Malformed entries (not written by the issue script) moved to the dead letters."""


@dataclass(frozen=True)
class QueueEntry:
    entry_id: str
    request_id: str
    user_id: str
    ordinal: int
    issued_ms: int


def load_event(coupon_id: str) -> Flow[CouponEvent]:
    """Read the event definition from Redis and store it in the database, once per consumer."""
    info = yield Command("HGETALL", (CouponKeys(coupon_id).info,))
    if not info:
        raise UnknownCoupon(coupon_id)
    event = CouponEvent.from_fields(info)
    yield DbCall("save_coupon", (event,))
    return event


def consume_batch(event: CouponEvent, consumer: str, now_ms: int,
                  config: ConsumerConfig = ConsumerConfig(),
                  crash_at: CrashPoint | None = None,
                  codes: CouponCodes = SIMULATION_CODES) -> Flow[BatchReport]:
    """Handle one batch of the coupon's queue: reclaimed entries first, else new ones.
    ``codes``: the deployment's (a keyed hash of coupon and request, so a redelivered
    entry is stored with the code it would have had); the default is the simulation's."""
    validate_id("consumer", consumer)
    validate_ms("now_ms", now_ms)
    keys = CouponKeys(event.coupon_id)
    _next, claimed, _deleted = yield Command(
        "XAUTOCLAIM", (keys.queue, ISSUE_GROUP, consumer, config.claim_idle_ms, "0-0",
                       "COUNT", config.batch_size))
    deliveries: dict[str, int] = {}
    if claimed:
        details = yield Pipeline(tuple(
            Command("XPENDING", (keys.queue, ISSUE_GROUP, entry_id, entry_id, 1),
                    (("parse_detail", True),))
            for entry_id, _fields in claimed))
        deliveries = {row[0]["message_id"]: row[0]["times_delivered"] for row in details if row}
        raw = claimed
    else:
        block = () if config.block_ms is None else ("BLOCK", config.block_ms)
        reply = yield Command("XREADGROUP", ("GROUP", ISSUE_GROUP, consumer,
                                             "COUNT", config.batch_size, *block,
                                             "STREAMS", keys.queue, ">"))
        raw = reply[0][1] if reply else []
    if not raw:
        return BatchReport()
    if crash_at is CrashPoint.AFTER_READ:
        raise InjectedCrash(crash_at)

    parsed = [(entry_id, _entry(entry_id, fields)) for entry_id, fields in raw]
    for entry_id, entry in parsed:
        if entry is None:
            yield from _discard(event, entry_id, now_ms)
    entries = [entry for _id, entry in parsed if entry is not None]
    coupons = [_issued(event, entry, codes) for entry in entries]
    decided = yield from _persist(coupons, config, crash_at)
    refused = [e for e in entries if e.request_id not in decided]
    if crash_at is CrashPoint.AFTER_COMMIT:
        raise InjectedCrash(crash_at)

    worn_out = {e.request_id: "the database refused the coupon" for e in refused
                if deliveries.get(e.entry_id, 1) >= config.max_deliveries}
    if worn_out:
        decided |= yield DbCall("compensate", (event.coupon_id, worn_out))
    done = [e for e in entries if e.request_id in decided]
    completed = [e for e in done if decided[e.request_id].code]
    yield from _complete(event, completed, decided)
    compensated = [e for e in done if not decided[e.request_id].code]
    for entry in compensated:
        yield from _compensate(event, entry, worn_out.get(entry.request_id, "compensated"), now_ms)
    return BatchReport(read=len(raw), reclaimed=len(claimed), persisted=len(completed),
                       compensated=len(compensated), left_pending=len(entries) - len(done),
                       discarded=len(raw) - len(entries))


def _entry(entry_id: str, fields: dict[str, str] | None) -> QueueEntry | None:
    """The entry the issue script wrote, or None for anything else found in the stream."""
    fields = fields or {}
    try:
        return QueueEntry(entry_id, validate_id("request", fields["request"]),
                          validate_id("user", fields["user"]), int(fields["ordinal"]),
                          int(fields["issued_ms"]))
    except (KeyError, ValueError):
        return None


def _issued(event: CouponEvent, entry: QueueEntry, codes: CouponCodes) -> IssuedCoupon:
    return IssuedCoupon(
        code=codes.code(event.coupon_id, entry.request_id), request_id=entry.request_id,
        user_id=entry.user_id, coupon_id=event.coupon_id, ordinal=entry.ordinal,
        issued_at_ms=entry.issued_ms, expires_at_ms=entry.issued_ms + event.validity_s * 1000)


def _rows_before_crash(crash_at: CrashPoint | None, rows: int) -> int | None:
    """The repository's test seam for a crash inside the transaction: how many rows it
    writes before dying (half for MID_BATCH, all for BEFORE_COMMIT), else None."""
    if crash_at is CrashPoint.MID_BATCH:
        return rows // 2
    if crash_at is CrashPoint.BEFORE_COMMIT:
        return rows
    return None


def _persist(coupons: Sequence[IssuedCoupon], config: ConsumerConfig,
             crash_at: CrashPoint | None) -> Flow[dict[str, Decided]]:
    """Store the batch; if the database refuses it, store entry by entry so that one
    bad entry does not hold back the others. Entries refused alone are left out."""
    fail_after = _rows_before_crash(crash_at, len(coupons))
    try:
        decided: dict[str, Decided] = yield from _with_retries(
            DbCall("persist_issued", (coupons, fail_after)), config)
        return decided
    except PersistenceError:
        decided = {}
        for coupon in coupons:
            try:
                decided |= yield from _with_retries(DbCall("persist_issued", ([coupon],)), config)
            except PersistenceError:
                continue
        return decided


def _with_retries(call: DbCall, config: ConsumerConfig) -> Flow[Any]:
    """A database call retried with doubling pauses while the database does not answer."""
    for attempt in range(config.db_retries + 1):
        try:
            return (yield call)
        except DatabaseUnavailable:
            if attempt == config.db_retries:
                raise
            yield Pause(config.db_retry_pause_s * 2**attempt)
    raise AssertionError("unreachable")


def _complete(event: CouponEvent, entries: Sequence[QueueEntry],
              decided: dict[str, Decided]) -> Flow[None]:
    if not entries:
        return
    keys = CouponKeys(event.coupon_id)
    yield Pipeline(tuple(
        Command("HSET", (user_coupons_key(e.user_id), decided[e.request_id].code,
                         cache_entry(event.coupon_id, CouponStatus.ACTIVE))) for e in entries))
    argv: list[str | int | float] = [ISSUE_GROUP, REQUEST_RECORD_TTL_S, keys.channel]
    for entry in entries:
        code = decided[entry.request_id].code or ""
        status = RequestStatus(entry.request_id, RequestState.COMPLETED, code)
        argv += [entry.entry_id, code, status.to_message()]
    yield Script("finalize", (keys.queue, *(keys.request(e.request_id) for e in entries)),
                 tuple(argv))


def _compensate(event: CouponEvent, entry: QueueEntry, reason: str, now_ms: int) -> Flow[None]:
    keys = CouponKeys(event.coupon_id)
    status = RequestStatus(entry.request_id, RequestState.FAILED, reason=reason)
    yield Script(
        "compensate",
        (keys.stock, keys.holders, keys.queue, keys.dead, keys.request(entry.request_id)),
        (ISSUE_GROUP, entry.entry_id, entry.user_id, entry.ordinal, entry.request_id, reason,
         REQUEST_RECORD_TTL_S, keys.channel, status.to_message(), now_ms, 1),
    )


def _discard(event: CouponEvent, entry_id: str, now_ms: int) -> Flow[None]:
    """Dead-letter an entry the issue script did not write: it took no stock, names no
    request, and would otherwise come back to every consumer for ever."""
    keys = CouponKeys(event.coupon_id)
    yield Script(
        "compensate",
        (keys.stock, keys.holders, keys.queue, keys.dead, keys.request(entry_id)),
        (ISSUE_GROUP, entry_id, "", 0, "", "malformed entry", REQUEST_RECORD_TTL_S,
         keys.channel, "", now_ms, 0),
    )


def consume_seed_batch(events: dict[str, CouponEvent], now_ms: int,
                       batch_size: int = SEED_BATCH_SIZE,
                       crash_at: CrashPoint | None = None,
                       options: SeedOptions = DEFAULT,
                       codes: CouponCodes = SIMULATION_CODES) -> Flow[BatchReport]:
    """One run of the seed consumer as written (docs/seed_trace.md S19-S28).

    Pop up to ``batch_size`` items one LPOP at a time; for each, tell the user
    COMPLETED with a code (status, publish, cache) *before* anything is stored;
    then save the batch at once. ``@Transactional`` has no effect on the private,
    self-invoked method, so nothing undoes the Redis writes when the save fails:
    the batch's users were told COMPLETED and the items are gone. ``options`` picks
    the reading of S26 (the cache's field) and of S28 (the table's unique key).
    """
    validate_ms("now_ms", now_ms)
    raw: list[str] = []
    for _ in range(batch_size):
        item = yield Command("LPOP", (SEED_ISSUE_QUEUE,))
        if item is None:
            break
        raw.append(item)
    if not raw:
        return BatchReport()
    if crash_at is CrashPoint.AFTER_READ:
        raise InjectedCrash(crash_at)
    coupons = []
    for entry in parse_seed_items(raw):
        if entry["coupon"] not in events:
            events[entry["coupon"]] = yield from load_event(entry["coupon"])
        coupon = _issued(events[entry["coupon"]], QueueEntry(
            "", entry["request"], entry["user"], 1, int(entry["issued_ms"])), codes)
        coupons.append(coupon)
        try:
            yield from _tell_seed_completed(coupon, options)
        except RedisUnavailable:
            continue   # S27: handleFailure (body not shown): logged; the coupon is still saved
    fail_after = _rows_before_crash(crash_at, len(coupons))
    saved = 0
    for coupon_id in sorted({coupon.coupon_id for coupon in coupons}):
        group = [coupon for coupon in coupons if coupon.coupon_id == coupon_id]
        try:
            yield DbCall("persist_issued", (group, fail_after, False,
                                            options.unique_key == "user_coupon"))
        except (PersistenceError, DatabaseUnavailable):
            continue  # S20: caught and logged; the popped items are simply gone
        saved += len(group)
    if crash_at is CrashPoint.AFTER_COMMIT:
        raise InjectedCrash(crash_at)
    return BatchReport(read=len(raw), persisted=saved, dropped=len(raw) - saved)


def _tell_seed_completed(coupon: IssuedCoupon, options: SeedOptions) -> Flow[None]:
    """S24-S26: status COMPLETED for an hour, the update on the one channel, the user's cache."""
    status = RequestStatus(coupon.request_id, RequestState.COMPLETED, coupon.code)
    yield Command("SET", (seed_status_key(coupon.request_id), status.to_message(),
                          "EX", SEED_COMPLETED_TTL_S))
    yield Command("PUBLISH", (SEED_STATUS_CHANNEL, status.to_message()))
    if options.cache_field == "code":
        yield Command("HSET", (user_coupons_key(coupon.user_id), coupon.code,
                               cache_entry(coupon.coupon_id, CouponStatus.ACTIVE)))
    else:
        yield Command("HSET", (user_coupons_key(coupon.user_id), coupon.coupon_id,
                               coupon.issued_at_ms))
