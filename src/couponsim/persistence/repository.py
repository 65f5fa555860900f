"""The repository: every database operation the flows ask for, one transaction each.

Flows reach it through ``DbCall(method, args)`` effects. Errors come out
typed: :class:`DatabaseUnavailable` when the database cannot be reached or is
busy (worth retrying), :class:`PersistenceError` when it refuses the data.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from couponsim.errors import (
    DatabaseUnavailable,
    InjectedCrash,
    InvalidInput,
    PersistenceError,
)
from couponsim.event import CouponEvent, DiscountKind
from couponsim.persistence.database import make_engine, redact
from couponsim.persistence.models import Base, Coupon, IssueDecision, Redemption, UserCoupon
from couponsim.pricing import (
    ApplyOutcome,
    ApplyRequest,
    ApplyResult,
    CouponView,
    judge,
    refused,
)
from couponsim.records import (
    CouponLedger,
    CouponStatus,
    Decided,
    Decision,
    HeldCoupon,
    IssuedCoupon,
    RedemptionLedger,
    RedemptionRecord,
)


class Repository:
    """``cap_at_stock`` makes the database the final arbiter of the stock: a batch
    that would store more coupons than the event has gets the excess decided
    COMPENSATED. Redis alone never asks for that; a failover that forgot issues
    does (the promoted replica sells the forgotten units again). Off, the
    database stores whatever Redis issued, which is how the failover table
    shows what Redis alone keeps."""

    def __init__(self, engine: Engine, cap_at_stock: bool = True) -> None:
        self.engine = engine
        self.cap_at_stock = cap_at_stock
        self.url = redact(engine.url.render_as_string(hide_password=False))
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    def from_url(cls, url: str) -> "Repository":
        """Connect and create the tables if they are missing."""
        repository = cls(make_engine(url))
        repository.create_schema()
        return repository

    def create_schema(self) -> None:
        with self._translated():
            Base.metadata.create_all(self.engine)

    def drop_schema(self) -> None:
        with self._translated():
            Base.metadata.drop_all(self.engine)

    def save_coupon(self, event: CouponEvent) -> None:
        """Store (or update) the event's coupon definition; consumers racing to do it agree."""
        fields = event.to_fields()
        values: dict[str, object] = {
            "id": event.coupon_id,
            **{name: value if name in ("name", "discount_kind") else int(value)
               for name, value in fields.items() if name != "coupon_id"},
        }
        upsert = self._insert(Coupon).values(values)
        with self._transaction() as session:
            session.execute(upsert.on_conflict_do_update(
                index_elements=["id"],
                set_={name: value for name, value in values.items() if name != "id"}))

    def persist_issued(self, coupons: Sequence[IssuedCoupon],
                       fail_after_rows: int | None = None,
                       one_per_ordinal: bool = True,
                       unique_key: bool = True) -> dict[str, Decided]:
        """Store a batch in one transaction, idempotently, and say what each request became.

        A request decided before (a redelivery) keeps its first decision: a
        coupon stored again is not duplicated, and a compensated one is not
        stored. ``fail_after_rows`` is a test seam: the transaction dies after
        writing that many rows, before its commit. ``one_per_ordinal=False`` is
        the seed's saveAll as written (docs/seed_trace.md S28): nothing is
        judged, neither a user's second coupon (the unique key then fails the
        whole batch) nor the event's stock (no cap: the document has none).
        ``unique_key=False`` (with ``one_per_ordinal=False`` only) is the seed's
        other reading of a table the document never shows, one without the
        (user, coupon, ordinal) key: each row is numbered after the user's
        highest ordinal, so the key cannot refuse it (``SeedOptions.unique_key``).
        """
        if not unique_key and one_per_ordinal:
            raise InvalidInput("unique_key=False is the seed's saveAll: it judges nothing "
                               "(one_per_ordinal=False)")
        if not coupons:
            return {}
        coupon_id = coupons[0].coupon_id
        if any(coupon.coupon_id != coupon_id for coupon in coupons):
            raise InvalidInput("a batch to persist holds coupons of one event only")
        ids = [coupon.request_id for coupon in coupons]
        with self._transaction() as session:
            session.execute(
                self._insert(IssueDecision).on_conflict_do_nothing(
                    index_elements=["coupon_id", "request_id"]),
                [{"request_id": c.request_id, "coupon_id": c.coupon_id,
                  "decision": Decision.PERSISTED.value, "reason": ""} for c in coupons],
            )
            # The event's row is locked first (PostgreSQL; SQLite already holds its one
            # write lock): consumers racing on one event then judge in turn, each seeing
            # what the one before stored, for the per-user rule as for the stock.
            stock = session.scalar(select(Coupon.stock).where(Coupon.id == coupon_id)
                                   .with_for_update())
            decided = self._decisions(session, coupon_id, ids)
            if one_per_ordinal:
                decided = self._one_per_ordinal(session, coupon_id, coupons, decided)
            if self.cap_at_stock and one_per_ordinal and stock is not None:
                decided = self._within_stock(session, coupon_id, stock, coupons, decided)
            rows = [vars(c) | {"status": "ACTIVE"} for c in coupons
                    if decided[c.request_id] is Decision.PERSISTED]
            if not unique_key:
                rows = self._numbered(session, coupon_id, rows)
            stored = self._insert(UserCoupon).on_conflict_do_nothing(
                index_elements=["coupon_id", "request_id"])
            if fail_after_rows is not None:
                if rows[:fail_after_rows]:
                    session.execute(stored, rows[:fail_after_rows])
                raise InjectedCrash(f"after {fail_after_rows} rows, before commit")
            if rows:
                session.execute(stored, rows)
            return self._answers(session, coupon_id, ids, decided)

    def compensate(self, coupon_id: str, reasons: dict[str, str]) -> dict[str, Decided]:
        """Decide requests as compensated unless they were persisted already.

        The caller gives the stock back only for those that come back
        COMPENSATED; one that comes back PERSISTED has its coupon and is to be
        completed instead.
        """
        if not reasons:
            return {}
        with self._transaction() as session:
            session.execute(
                self._insert(IssueDecision).on_conflict_do_nothing(
                    index_elements=["coupon_id", "request_id"]),
                [{"request_id": request_id, "coupon_id": coupon_id,
                  "decision": Decision.COMPENSATED.value, "reason": reason[:200]}
                 for request_id, reason in reasons.items()],
            )
            ids = list(reasons)
            return self._answers(session, coupon_id, ids,
                                 self._decisions(session, coupon_id, ids))

    def ledger(self, coupon_id: str) -> CouponLedger:
        with self._transaction() as session:
            coupons = session.execute(
                select(UserCoupon.request_id, UserCoupon.user_id, UserCoupon.ordinal)
                .where(UserCoupon.coupon_id == coupon_id)
            ).all()
            compensated = session.scalars(
                select(IssueDecision.request_id).where(
                    IssueDecision.coupon_id == coupon_id,
                    IssueDecision.decision == Decision.COMPENSATED.value)
            ).all()
        return CouponLedger(tuple((r, u, int(n)) for r, u, n in coupons), frozenset(compensated))

    def purge_coupon(self, coupon_id: str) -> int:
        """Forget an event's coupons, decisions and definition (scratch runs only)."""
        with self._transaction() as session:
            removed = 0
            for model, column in ((Redemption, Redemption.coupon_id),
                                  (UserCoupon, UserCoupon.coupon_id),
                                  (IssueDecision, IssueDecision.coupon_id), (Coupon, Coupon.id)):
                result = cast(CursorResult[Any], session.execute(
                    delete(model).where(column == coupon_id)))
                removed += result.rowcount
            return removed

    def ping(self) -> None:
        """One round trip, for a health check: raises DatabaseUnavailable when it fails."""
        with self._transaction() as session:
            session.execute(select(1))

    def find_coupon(self, code: str) -> CouponView | None:
        """The coupon and its event's checkout rules, or None for an unknown code."""
        with self._transaction() as session:
            return self._view(session, code)

    def apply_coupon(self, request: ApplyRequest, now_ms: int) -> ApplyResult:
        """The hardened apply: judge and mark used in one transaction, by compare-and-set.

        The UPDATE only succeeds on a coupon that is still ACTIVE and owned by
        the user, so two orders racing for one coupon cannot both win, lock or
        no lock. The same (order, code) again answers from the stored redemption.
        """
        with self._transaction() as session:
            earlier = session.get(Redemption, (request.order_id, request.code))
            if earlier is not None and earlier.released_at_ms is None \
                    and earlier.user_id == request.user_id:
                return ApplyResult(ApplyOutcome.APPLIED, earlier.code, earlier.order_id,
                                   earlier.original, earlier.discount, earlier.final)
            result = judge(self._view(session, request.code), request, now_ms)
            if not result.applied:
                return result
            won = cast(CursorResult[Any], session.execute(
                update(UserCoupon)
                .where(UserCoupon.code == request.code, UserCoupon.user_id == request.user_id,
                       UserCoupon.status == CouponStatus.ACTIVE.value,
                       UserCoupon.expires_at_ms > now_ms)
                .values(status=CouponStatus.USED.value, order_id=request.order_id)))
            if won.rowcount != 1:
                return refused(ApplyOutcome.ALREADY_USED, request)
            self._record_redemption(session, request, result, now_ms)
            return result

    def mark_used_blindly(self, request: ApplyRequest, result: ApplyResult, now_ms: int) -> None:
        """The seed's save: write the coupon as used by this order, whatever it is now."""
        with self._transaction() as session:
            session.execute(update(UserCoupon).where(UserCoupon.code == request.code)
                            .values(status=CouponStatus.USED.value, order_id=request.order_id))
            self._record_redemption(session, request, result, now_ms)

    def release_coupon(self, user_id: str, order_id: str, code: str,
                       now_ms: int) -> CouponStatus | None:
        """Give the coupon back from a cancelled order, once.

        Returns the coupon's new status (ACTIVE, or EXPIRED past its validity),
        or None when this order did not hold it (never applied, or released).
        """
        with self._transaction() as session:
            coupon = session.get(UserCoupon, code)
            if coupon is None:
                return None
            status = (CouponStatus.ACTIVE if now_ms < coupon.expires_at_ms
                      else CouponStatus.EXPIRED)
            released = cast(CursorResult[Any], session.execute(
                update(UserCoupon)
                .where(UserCoupon.code == code, UserCoupon.user_id == user_id,
                       UserCoupon.status == CouponStatus.USED.value,
                       UserCoupon.order_id == order_id)
                .values(status=status.value, order_id=None)))
            if released.rowcount != 1:
                return None
            session.execute(update(Redemption)
                            .where(Redemption.order_id == order_id, Redemption.code == code)
                            .values(released_at_ms=now_ms))
            return status

    def expire_coupons(self, now_ms: int) -> int:
        """Mark every ACTIVE coupon past its validity EXPIRED; returns how many."""
        with self._transaction() as session:
            result = cast(CursorResult[Any], session.execute(
                update(UserCoupon)
                .where(UserCoupon.status == CouponStatus.ACTIVE.value,
                       UserCoupon.expires_at_ms <= now_ms)
                .values(status=CouponStatus.EXPIRED.value)))
            return result.rowcount

    def redemption_ledger(self, coupon_id: str) -> RedemptionLedger:
        with self._transaction() as session:
            coupons = session.scalars(
                select(UserCoupon).where(UserCoupon.coupon_id == coupon_id)).all()
            redemptions = session.scalars(
                select(Redemption).where(Redemption.coupon_id == coupon_id)).all()
            return RedemptionLedger(
                tuple(_held(c) for c in coupons),
                tuple(RedemptionRecord(r.order_id, r.code, r.user_id, r.applied_at_ms,
                                       r.released_at_ms) for r in redemptions))

    @staticmethod
    def _view(session: Session, code: str) -> CouponView | None:
        row = session.execute(select(UserCoupon, Coupon).join(Coupon)
                              .where(UserCoupon.code == code)).first()
        if row is None:
            return None
        coupon, event = row
        return CouponView(coupon.code, coupon.user_id, coupon.coupon_id,
                          CouponStatus(coupon.status), coupon.order_id, coupon.expires_at_ms,
                          DiscountKind(event.discount_kind), event.discount_value,
                          event.max_discount, event.min_order)

    @staticmethod
    def _record_redemption(session: Session, request: ApplyRequest, result: ApplyResult,
                           now_ms: int) -> None:
        coupon_id = session.scalar(select(UserCoupon.coupon_id)
                                   .where(UserCoupon.code == request.code))
        session.merge(Redemption(
            order_id=request.order_id, code=request.code, user_id=request.user_id,
            coupon_id=coupon_id, original=result.original, discount=result.discount,
            final=result.final, applied_at_ms=now_ms, released_at_ms=None))

    def coupons_of_event(self, coupon_id: str) -> list[UserCoupon]:
        """An event's stored coupons in the order they were issued."""
        with self._transaction() as session:
            return list(session.scalars(
                select(UserCoupon).where(UserCoupon.coupon_id == coupon_id)
                .order_by(UserCoupon.issued_at_ms, UserCoupon.code)))

    def coupons_of(self, user_id: str) -> list[UserCoupon]:
        with self._transaction() as session:
            return list(session.scalars(
                select(UserCoupon).where(UserCoupon.user_id == user_id)
                .order_by(UserCoupon.coupon_id, UserCoupon.ordinal)))

    def coupons_held(self, user_id: str) -> list[HeldCoupon]:
        """The user's coupons as plain records, for the flows."""
        return [_held(c) for c in self.coupons_of(user_id)]

    @staticmethod
    def _within_stock(session: Session, coupon_id: str, stock: int,
                      coupons: Sequence[IssuedCoupon],
                      decided: dict[str, Decision]) -> dict[str, Decision]:
        """Turn the PERSISTED decisions beyond the event's stock into COMPENSATED ones.

        Under the event's row lock, so two consumers cannot both count the last
        unit as free. Coupons stored before (a redelivery) keep their place; new
        ones fill what is left.
        """
        ids = [coupon.request_id for coupon in coupons]
        stored = set(session.scalars(select(UserCoupon.request_id).where(
            UserCoupon.coupon_id == coupon_id, UserCoupon.request_id.in_(ids))))
        others = session.scalar(select(func.count()).select_from(UserCoupon).where(
            UserCoupon.coupon_id == coupon_id, UserCoupon.request_id.not_in(ids))) or 0
        room = stock - others - len(stored)
        excess = []
        for coupon in coupons:
            if decided[coupon.request_id] is Decision.PERSISTED \
                    and coupon.request_id not in stored:
                if room > 0:
                    room -= 1
                else:
                    excess.append(coupon.request_id)
        return decided | Repository._overrule(session, coupon_id, excess,
                                              "over the event's stock")

    @staticmethod
    def _one_per_ordinal(session: Session, coupon_id: str, coupons: Sequence[IssuedCoupon],
                         decided: dict[str, Decision]) -> dict[str, Decision]:
        """Turn a PERSISTED decision into COMPENSATED where the user already holds that
        ordinal under another request (stored before, or earlier in this batch).

        Redis never issues those; a promoted replica that forgot a user's mark does.
        Left to the (user, coupon, ordinal) key, the insert would fail the batch and
        the entry would wait for ``max_deliveries`` redeliveries to be compensated;
        decided here, the stock comes back at once and the user keeps one coupon.
        """
        users = {coupon.user_id for coupon in coupons}
        held = {(user, int(ordinal)): request for request, user, ordinal in session.execute(
            select(UserCoupon.request_id, UserCoupon.user_id, UserCoupon.ordinal)
            .where(UserCoupon.coupon_id == coupon_id, UserCoupon.user_id.in_(users)))}
        taken = []
        for coupon in coupons:
            if decided[coupon.request_id] is not Decision.PERSISTED:
                continue
            holder = held.setdefault((coupon.user_id, coupon.ordinal), coupon.request_id)
            if holder != coupon.request_id:
                taken.append(coupon.request_id)
        return decided | Repository._overrule(session, coupon_id, taken,
                                              "the user holds this coupon already")

    @staticmethod
    def _numbered(session: Session, coupon_id: str,
                  rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows, each user's numbered after their highest stored ordinal of the event.

        Under the event's row lock (taken before), so two consumers cannot give one
        user the same number. A row the insert skips (its request stored already)
        leaves a gap in a user's numbers, which nothing reads.
        """
        users = {row["user_id"] for row in rows}
        highest = {user: int(ordinal) for user, ordinal in session.execute(
            select(UserCoupon.user_id, func.max(UserCoupon.ordinal))
            .where(UserCoupon.coupon_id == coupon_id, UserCoupon.user_id.in_(users))
            .group_by(UserCoupon.user_id))}
        numbered = []
        for row in rows:
            ordinal = highest.get(row["user_id"], 0) + 1
            highest[row["user_id"]] = ordinal
            numbered.append(row | {"ordinal": ordinal})
        return numbered

    @staticmethod
    def _overrule(session: Session, coupon_id: str, requests: list[str],
                  reason: str) -> dict[str, Decision]:
        """Record requests first decided PERSISTED in this transaction as COMPENSATED."""
        if requests:
            session.execute(update(IssueDecision)
                            .where(IssueDecision.coupon_id == coupon_id,
                                   IssueDecision.request_id.in_(requests))
                            .values(decision=Decision.COMPENSATED.value, reason=reason))
        return dict.fromkeys(requests, Decision.COMPENSATED)

    @staticmethod
    def _decisions(session: Session, coupon_id: str, ids: list[str]) -> dict[str, Decision]:
        rows = session.execute(
            select(IssueDecision.request_id, IssueDecision.decision)
            .where(IssueDecision.coupon_id == coupon_id, IssueDecision.request_id.in_(ids))
        ).all()
        return {request_id: Decision(decision) for request_id, decision in rows}

    @staticmethod
    def _answers(session: Session, coupon_id: str, ids: list[str],
                 decided: dict[str, Decision]) -> dict[str, Decided]:
        codes = {request_id: code for request_id, code in session.execute(
            select(UserCoupon.request_id, UserCoupon.code)
            .where(UserCoupon.coupon_id == coupon_id, UserCoupon.request_id.in_(ids))
        )}
        return {request_id: Decided(decided[request_id], codes.get(request_id))
                for request_id in ids}

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._translated(), self._sessions.begin() as session:
            yield session

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise PersistenceError(f"the database refused the write: {exc.orig}") from exc
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise DatabaseUnavailable(self.url, str(exc.orig)) from exc
            raise PersistenceError(f"the database refused the write: {exc.orig}") from exc


def _held(coupon: UserCoupon) -> HeldCoupon:
    """A stored coupon as a plain record: flows and checkers never hold ORM objects."""
    return HeldCoupon(coupon.code, coupon.user_id, CouponStatus(coupon.status), coupon.order_id,
                      coupon.expires_at_ms, coupon.coupon_id, coupon.issued_at_ms)
