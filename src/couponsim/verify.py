"""The invariant checker: what Redis and the database hold, never what the code counted.

Modelled on Jepsen's checkers. Every queue entry is an acknowledged add: at
the end it must be a stored coupon, a compensation, or still in flight, and
nothing else (set: lost / unexpected). A duplicate always fails
(unique-ids). The coupons issued must fit the stock, and stock left plus
coupons issued must equal the initial stock (counter, conservation).

The record of what was issued is the hardened per-coupon stream, or for the
seed the global list and, once popped, the stock decrements alone: the seed
keeps no per-request record, so its losses can only be counted, not named.
What users were told is judged from the statuses and the users' coupon lists
themselves, the seed's (``coupon:status:*``, untagged) as the hardened ones.
It is a flow, so any driver can run it.
"""

from collections import Counter
from dataclasses import dataclass, field

from couponsim.codes import SIMULATION_CODES, CouponCodes
from couponsim.effects import Command, DbCall, Pipeline
from couponsim.errors import UnknownCoupon
from couponsim.event import CouponEvent
from couponsim.flows import Flow
from couponsim.flows.redeem import cached_coupon
from couponsim.flows.seed_queue import parse_seed_items, seed_entries
from couponsim.flows.status import RequestState, parse_seed_status
from couponsim.keys import ISSUE_GROUP, SEED_ISSUE_QUEUE, SEED_STATUS_PREFIX, CouponKeys
from couponsim.records import CouponLedger, CouponStatus, RedemptionLedger


@dataclass(frozen=True)
class Check:
    """One invariant, the figure it was judged on, and the verdict."""

    name: str
    observed: int
    ok: bool


@dataclass(frozen=True)
class InvariantReport:
    coupon_id: str
    variant: str
    """``hardened`` (a stream queue) or ``seed`` (the global list)."""
    initial_stock: int
    per_user_limit: int
    stock_left: int
    issued: int
    """Coupons that exist: stored in the database or still in flight (without a
    database: every queue entry not compensated)."""
    in_flight: int
    """Queue entries not yet handled by a consumer (undelivered or pending)."""
    persisted: int | None
    """Coupons in the database; None when no database was checked."""
    compensated: int
    coupons_per_user: Counter[str] = field(repr=False)
    lost: tuple[str, ...] = ()
    """Requests of queue entries that are neither stored, compensated nor in flight."""
    unexpected: tuple[str, ...] = ()
    """Stored coupons whose request was never queued, and queue entries the issue
    script did not write."""
    stuck: tuple[str, ...] = ()
    """Requests whose entry is no longer in flight but whose status is not the final
    one the database implies (COMPLETED for a stored coupon, FAILED for a compensation)."""
    redemptions: "RedemptionFindings | None" = None
    """Redemption anomalies, when a database was checked."""
    told: "ToldFindings | None" = None
    """What users were told that the store does not bear out."""

    @property
    def oversold(self) -> int:
        return max(0, self.issued - self.initial_stock)

    @property
    def duplicates(self) -> dict[str, int]:
        """Users holding more coupons than the event allows, with how many they hold."""
        return {user: n for user, n in self.coupons_per_user.items()
                if n > self.per_user_limit}

    @property
    def conservation_gap(self) -> int:
        """stock left + issued - initial stock: below 0, units lost; above, units created."""
        return self.stock_left + self.issued - self.initial_stock

    @property
    def lost_units(self) -> int:
        """Stock taken that ended as no coupon: named requests, or (seed) counted units."""
        return max(len(self.lost), -self.conservation_gap)

    @property
    def checks(self) -> list[Check]:
        return [
            Check("no oversell (coupons issued beyond the stock)", self.oversold,
                  self.oversold == 0),
            Check("stock never below zero (stock left)", self.stock_left, self.stock_left >= 0),
            Check("no duplicate (users over their limit)", len(self.duplicates),
                  not self.duplicates),
            Check("nothing lost (stock taken, no coupon, no compensation)", self.lost_units,
                  self.lost_units == 0),
            Check("conservation (stock left + issued - initial)", self.conservation_gap,
                  self.conservation_gap == 0),
            Check("nothing unexpected (stored, never queued)", len(self.unexpected),
                  not self.unexpected),
            Check("nothing stuck (status not final, not in flight)", len(self.stuck),
                  not self.stuck),
        ] + (self.told.checks if self.told else []) + (
            self.redemptions.checks if self.redemptions else [])

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


@dataclass(frozen=True)
class ToldFindings:
    """What users were told, judged against what the store holds.

    Read from the statuses and caches themselves, for the seed's records
    (``coupon:status:{R}``, ``user:coupons:{U}``) as for the hardened ones. A
    COMPLETED that was published and then overwritten reads PROCESSING, and is
    found by the second check. ``None`` for a figure not judged (no database).
    """

    completed_unstored: tuple[str, ...] | None
    """Requests whose status says COMPLETED while the database holds no coupon for them."""
    processing_drained: tuple[str, ...]
    """Requests still PROCESSING although no queue holds them any more."""
    codes_not_held: tuple[str, ...] | None
    """``user code`` pairs: a code in the user's coupon list that the database does not
    hold for that user."""

    @property
    def checks(self) -> list[Check]:
        checks = [Check("nothing left PROCESSING once the queue is drained",
                        len(self.processing_drained), not self.processing_drained)]
        if self.completed_unstored is not None:
            checks.insert(0, Check("told COMPLETED only with a stored coupon",
                                   len(self.completed_unstored), not self.completed_unstored))
        if self.codes_not_held is not None:
            checks.append(Check("codes told are the user's in the database",
                                len(self.codes_not_held), not self.codes_not_held))
        return checks


@dataclass(frozen=True)
class RedemptionFindings:
    """Codes breaking a redemption invariant: each list should be empty."""

    used_twice: tuple[str, ...]
    """Codes applied to more than one order at once."""
    used_by_other: tuple[str, ...]
    """Codes applied by a user who does not own them."""
    used_after_expiry: tuple[str, ...]
    out_of_step: tuple[str, ...]
    """Codes whose state disagrees with their redemptions (USED with no open
    redemption of that order, or an open redemption on a coupon not USED by it)."""

    @property
    def checks(self) -> list[Check]:
        return [
            Check("coupon used at most once (codes on two orders)", len(self.used_twice),
                  not self.used_twice),
            Check("used only by its owner", len(self.used_by_other), not self.used_by_other),
            Check("used only before expiry", len(self.used_after_expiry),
                  not self.used_after_expiry),
            Check("state agrees with redemptions (release given back once)",
                  len(self.out_of_step), not self.out_of_step),
        ]


def judge_redemptions(ledger: RedemptionLedger) -> RedemptionFindings:
    coupons = {coupon.code: coupon for coupon in ledger.coupons}
    open_orders: dict[str, list[str]] = {}
    other, late = set(), set()
    for redemption in ledger.redemptions:
        coupon = coupons[redemption.code]
        if redemption.user_id != coupon.user_id:
            other.add(redemption.code)
        if redemption.applied_at_ms >= coupon.expires_at_ms:
            late.add(redemption.code)
        if redemption.released_at_ms is None:
            open_orders.setdefault(redemption.code, []).append(redemption.order_id)
    out_of_step = {
        coupon.code for coupon in ledger.coupons
        if (coupon.status is CouponStatus.USED)
        != (open_orders.get(coupon.code, []) == [coupon.order_id])
    }
    twice = {code for code, orders in open_orders.items() if len(orders) > 1}
    return RedemptionFindings(tuple(sorted(twice)), tuple(sorted(other)), tuple(sorted(late)),
                              tuple(sorted(out_of_step - twice)))


def check_invariants(coupon_id: str, with_database: bool = False,
                     codes: CouponCodes = SIMULATION_CODES) -> Flow[InvariantReport]:
    """Read the coupon's state (and, with a database, its stored coupons) and judge it.
    ``codes``: those the run's consumers made (the seed's statuses are known as the
    event's by their code); the simulation's unless a deployment's are given.

    Exact on a system at rest. On a live one, the Redis side is read as one
    MULTI/EXEC snapshot and the database after it, so a coupon that moves from
    the queue into the database meanwhile is seen at least once, never lost.
    """
    keys = CouponKeys(coupon_id)
    info = yield Command("HGETALL", (keys.info,))
    if not info:
        raise UnknownCoupon(coupon_id)
    event = CouponEvent.from_fields(info)
    if (yield Command("EXISTS", (keys.queue,))):
        return (yield from _hardened(event, with_database))
    stock_left = int((yield Command("GET", (keys.stock,))) or 0)
    items = seed_entries((yield Command("LRANGE", (SEED_ISSUE_QUEUE, 0, -1))), coupon_id)
    ledger = (yield DbCall("ledger", (coupon_id,))) if with_database else None
    holders = Counter(entry["user"] for entry in items)
    if ledger is not None:
        holders.update(user for _request, user, _n in ledger.coupons)
    return InvariantReport(
        coupon_id, "seed", event.stock, event.per_user_limit, stock_left,
        issued=sum(holders.values()), in_flight=len(items),
        persisted=None if ledger is None else len(ledger.coupons),
        compensated=0, coupons_per_user=holders,
        redemptions=(yield from _redemptions(coupon_id, with_database)),
        told=(yield from _seed_told(coupon_id, ledger, codes)),
    )


def _seed_told(coupon_id: str, ledger: CouponLedger | None,
               codes: CouponCodes) -> Flow[ToldFindings]:
    """The seed's statuses carry no coupon tag: every ``coupon:status:*`` is read. A
    COMPLETED one belongs to this coupon when its code is this coupon's code for the
    request (codes are derived from both); a PROCESSING one names no coupon, so every
    PROCESSING status whose request is in no queue item (of any coupon) is judged."""
    statuses = yield from _scan_values(f"{SEED_STATUS_PREFIX}*")
    queued = {entry["request"] for entry in parse_seed_items(
        (yield Command("LRANGE", (SEED_ISSUE_QUEUE, 0, -1))))}
    stored = None if ledger is None else {request for request, _user, _n in ledger.coupons}
    completed, processing = [], []
    for key, raw in statuses.items():
        request = key[len(SEED_STATUS_PREFIX):]
        status = parse_seed_status(request, raw)
        if status.state is RequestState.PROCESSING and request not in queued:
            processing.append(request)
        elif status.state is RequestState.COMPLETED \
                and status.code == codes.code(coupon_id, request):
            completed.append(request)
    return ToldFindings(
        None if stored is None else tuple(sorted(set(completed) - stored)),
        tuple(sorted(processing)),
        None if ledger is None else (yield from _codes_not_held(coupon_id)))


def _codes_not_held(coupon_id: str) -> Flow[tuple[str, ...]]:
    """Every code of this coupon in a user's cached list must be that user's in the
    database (``user:coupons:{U}`` is what the user is shown as their coupons)."""
    held = {coupon.code: coupon.user_id
            for coupon in (yield DbCall("coupons_of_event", (coupon_id,)))}
    wrong = []
    cursor = "0"
    while True:
        cursor, keys = yield Command("SCAN", (cursor, "MATCH", "user:coupons:*", "COUNT", 1000))
        for key in keys:
            user = key[len("user:coupons:{"):-1]
            for code, value in (yield Command("HGETALL", (key,))).items():
                if cached_coupon(value) == coupon_id and held.get(code) != user:
                    wrong.append(f"{user} {code}")
        if str(cursor) == "0":
            return tuple(sorted(wrong))


def _scan_values(pattern: str) -> Flow[dict[str, str]]:
    """Every string key matching ``pattern``, with its value (a key gone meanwhile is left out)."""
    found: dict[str, str] = {}
    cursor = "0"
    while True:
        cursor, keys = yield Command("SCAN", (cursor, "MATCH", pattern, "COUNT", 1000))
        if keys:   # one GET each: untagged keys lie in many slots of a cluster
            values = yield Pipeline(tuple(Command("GET", (key,)) for key in keys))
            found |= {k: v for k, v in zip(keys, values, strict=True) if v is not None}
        if str(cursor) == "0":
            return found


def _redemptions(coupon_id: str, with_database: bool) -> Flow[RedemptionFindings | None]:
    if not with_database:
        return None
    return judge_redemptions((yield DbCall("redemption_ledger", (coupon_id,))))


def _hardened(event: CouponEvent, with_database: bool) -> Flow[InvariantReport]:
    keys = CouponKeys(event.coupon_id)
    stock, entries, groups, pending, dead_entries, holders_hash = yield Pipeline((
        Command("GET", (keys.stock,)),
        Command("XRANGE", (keys.queue, "-", "+")),
        Command("XINFO", ("GROUPS", keys.queue)),
        Command("XPENDING", (keys.queue, ISSUE_GROUP, "-", "+", 2**31 - 1),
                (("parse_detail", True),)),
        Command("XRANGE", (keys.dead, "-", "+")),
        Command("HGETALL", (keys.holders,)),
    ), atomic=True)
    ledger: CouponLedger | None = (
        (yield DbCall("ledger", (event.coupon_id,))) if with_database else None)
    last_delivered = next((g["last-delivered-id"] for g in groups if g["name"] == ISSUE_GROUP),
                          "0-0")
    flying_ids = {row["message_id"] for row in pending}
    flying_ids |= {entry_id for entry_id, _ in entries
                   if _stream_id(entry_id) > _stream_id(last_delivered)}
    # Every request the issue script recorded: in the stream, or (if the entry was
    # trimmed or deleted) still holding an ordinal in the holders hash.
    user_of = {fields["request"]: fields["user"] for _id, fields in entries
               if "request" in fields and "user" in fields}
    user_of |= {request: field.split("#", 1)[0]
                for field, request in holders_hash.items() if "#" in field}
    request_of = {entry_id: fields.get("request") for entry_id, fields in entries}
    foreign = [f"entry {entry_id}" for entry_id, request in request_of.items() if not request]
    flying = {request_of[e] for e in flying_ids if request_of.get(e)}
    compensated = {f["request"] for _id, f in dead_entries if f.get("request")}

    if ledger is None:
        stored: dict[str, str] = {}
        alive = set(user_of) - compensated
        settled_states = {}
    else:
        stored = {request: user for request, user, _n in ledger.coupons}
        compensated |= ledger.compensated
        alive = set(stored) | flying
        settled_states = {request: "COMPLETED" for request in stored} | {
            request: "FAILED" for request in compensated}
    holders = Counter(user_of.get(request) or stored[request] for request in alive)
    lost = [] if ledger is None else sorted(set(user_of) - alive - compensated)
    unexpected = sorted(set(stored) - set(user_of)) + foreign
    settled = sorted(set(user_of) - flying)
    statuses = (yield Pipeline(tuple(Command("HGET", (keys.request(r), "status"))
                                     for r in settled))) if settled else []
    stuck = [request for request, status in zip(settled, statuses, strict=True)
             if status == "PROCESSING" or (
                 request in settled_states and status != settled_states[request])]
    told = ToldFindings(
        None if ledger is None else tuple(sorted(
            request for request, status in zip(settled, statuses, strict=True)
            if status == "COMPLETED" and request not in stored)),
        tuple(request for request, status in zip(settled, statuses, strict=True)
              if status == "PROCESSING"),
        None if ledger is None else (yield from _codes_not_held(event.coupon_id)))
    return InvariantReport(
        event.coupon_id, "hardened", event.stock, event.per_user_limit, int(stock or 0),
        issued=len(alive), in_flight=len(flying), persisted=None if ledger is None else len(stored),
        compensated=len(compensated), coupons_per_user=holders, lost=tuple(lost),
        unexpected=tuple(unexpected), stuck=tuple(stuck),
        redemptions=(yield from _redemptions(event.coupon_id, with_database)), told=told,
    )


def _stream_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def winners_in_order(coupon_id: str) -> Flow[list[str]]:
    """Who won, in the order the store chose them: the hardened queue's own order, or
    (the seed's list being drained) the stored coupons by issue time."""
    keys = CouponKeys(coupon_id)
    if (yield Command("EXISTS", (keys.queue,))):
        entries = yield Command("XRANGE", (keys.queue, "-", "+"))
        return [fields["user"] for _id, fields in entries if "user" in fields]
    issued = yield DbCall("coupons_of_event", (coupon_id,))
    return [coupon.user_id for coupon in issued]
