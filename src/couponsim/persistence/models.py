"""SQLAlchemy models: the event's coupon definition, the coupons users hold, and
the ledger that decides each queued request exactly once.

Times are integer milliseconds from the caller's clock, as everywhere in the
package, so a simulated run stores the same rows for the same seed.
"""

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from couponsim.event import MAX_NAME_LENGTH
from couponsim.records import CouponStatus

ID = String(64)


class Base(DeclarativeBase):
    pass


class Coupon(Base):
    """One event's coupon definition (copied from ``coupon:info:{C}``)."""

    __tablename__ = "coupons"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    stock: Mapped[int] = mapped_column(BigInteger)
    discount_kind: Mapped[str] = mapped_column(String(16))
    discount_value: Mapped[int] = mapped_column(BigInteger)
    max_discount: Mapped[int] = mapped_column(BigInteger)
    min_order: Mapped[int] = mapped_column(BigInteger)
    per_user_limit: Mapped[int] = mapped_column(Integer)
    validity_s: Mapped[int] = mapped_column(BigInteger)
    starts_at_ms: Mapped[int] = mapped_column(BigInteger)
    ends_at_ms: Mapped[int] = mapped_column(BigInteger)


class UserCoupon(Base):
    """A coupon a user holds. ``ordinal`` numbers a user's coupons of one event
    (1..per_user_limit), so the unique constraint enforces the limit here too."""

    __tablename__ = "user_coupons"
    __table_args__ = (UniqueConstraint("user_id", "coupon_id", "ordinal"),
                      UniqueConstraint("coupon_id", "request_id"))

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(ID)
    """Unique per coupon, as in Redis, where a request's key carries the coupon's tag."""
    user_id: Mapped[str] = mapped_column(ID, index=True)
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    issued_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=CouponStatus.ACTIVE.value)
    order_id: Mapped[str | None] = mapped_column(ID, nullable=True)


class IssueDecision(Base):
    """Exactly one decision per queued request (of one coupon): persisted, or compensated.

    A consumer that persists and one that compensates race on this primary key,
    so a zombie consumer cannot store a coupon whose stock was given back.
    """

    __tablename__ = "issue_decisions"

    coupon_id: Mapped[str] = mapped_column(ID, primary_key=True)
    request_id: Mapped[str] = mapped_column(ID, primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")


class Redemption(Base):
    """A coupon applied to an order. One row per (order, code): applying again to the
    same order answers from it; cancelling sets ``released_at_ms``."""

    __tablename__ = "redemptions"

    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    code: Mapped[str] = mapped_column(ForeignKey("user_coupons.code"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID)
    coupon_id: Mapped[str] = mapped_column(ID, index=True)
    original: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    final: Mapped[int] = mapped_column(BigInteger)
    applied_at_ms: Mapped[int] = mapped_column(BigInteger)
    released_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
