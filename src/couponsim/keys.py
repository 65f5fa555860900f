"""The Redis key schema, in one place.

Every key of one coupon carries the hash tag ``{couponId}`` so that each
script touches a single cluster slot. The seed design's names are kept where
they are safe; the seed's global issue list and its per-request status key are
kept only for the seed variant, whose flaws the workbench demonstrates.
"""

import os
from dataclasses import dataclass

from couponsim.ids import validate_id


def _channel_namespace() -> str:
    """``COUPONSIM_CHANNEL_NAMESPACE`` as a channel prefix (``NAME:``), or none.

    Redis keeps each database's keys apart but not its pub/sub channels: two systems
    sharing one server on different databases (staging beside production, or two test
    runs) would hear each other's news and act on it (a status stream ended by another
    system's COMPLETED, a sold-out flag raised by another system's sale). Each such
    system names its own namespace; it is read once, at import, like the key schema."""
    name = os.environ.get("COUPONSIM_CHANNEL_NAMESPACE", "")
    return f"{validate_id('channel namespace', name)}:" if name else ""


CHANNEL_NAMESPACE = _channel_namespace()
"""Every pub/sub channel of this process begins so (empty when no namespace is set)."""

SEED_ISSUE_QUEUE = "coupon:issue:queue"
"""The seed's one global list of issued requests (LPOPed by its consumer)."""

SEED_STATUS_CHANNEL = f"{CHANNEL_NAMESPACE}coupon:status:updates"
"""The seed's one pub/sub channel for every request's status updates."""

ISSUE_GROUP = "issuers"
"""The consumer group on every coupon's issue queue, created at warm-up."""


STATUS_CHANNEL_PREFIX = f"{CHANNEL_NAMESPACE}coupon:events:"
"""Every coupon's status channel begins so (``CouponKeys.channel``): the status hub
subscribes to the pattern, and tells a channel's coupon back from it."""


def single_slot(pattern: str) -> bool:
    """Does every key a SCAN pattern matches carry the same hash tag (so lie in one
    slot, on one shard of a cluster)? ``coupon:info:{c1}`` does; ``coupon:info:{*``
    (every event) does not: its braces hold a wildcard, not a tag."""
    start = pattern.find("{")
    end = pattern.find("}", start + 1) if start >= 0 else -1
    return end > start + 1 and not any(c in pattern[start:end] for c in "*?[\\")


SEED_STATUS_PREFIX = "coupon:status:"
"""Every seed status key begins so (``seed_status_key``): with no coupon tag, the
checker finds them by this prefix."""


def seed_status_key(request_id: str) -> str:
    """The seed's status string for one request; it carries no coupon tag."""
    return f"{SEED_STATUS_PREFIX}{validate_id('request', request_id)}"


def user_coupons_key(user_id: str) -> str:
    """The cache of one user's coupons (hash: code -> JSON coupon and status), tagged by user."""
    return f"user:coupons:{{{validate_id('user', user_id)}}}"


def rate_limit_key(name: str) -> str:
    """A shared rate limiter's state (string: GCRA's theoretical arrival time)."""
    return f"ratelimit:{{{validate_id('rate limiter', name)}}}"


def seed_lock_key(code: str) -> str:
    """The seed's checkout lock of one coupon code, as written (``coupon:lock:`` + code)."""
    return f"coupon:lock:{{{validate_id('coupon code', code)}}}"


def redemption_lock_key(code: str) -> str:
    """The checkout lock of one coupon code (string: its holder's token)."""
    return f"redeem:lock:{{{validate_id('coupon code', code)}}}"


@dataclass(frozen=True)
class CouponKeys:
    """All keys of one coupon; building one validates the coupon ID."""

    coupon_id: str

    def __post_init__(self) -> None:
        validate_id("coupon", self.coupon_id)

    @property
    def tag(self) -> str:
        return f"{{{self.coupon_id}}}"

    @property
    def info(self) -> str:
        """Hash: the event's definition (initial stock, discount, limits, times)."""
        return f"coupon:info:{self.tag}"

    @property
    def active(self) -> str:
        """String: the event's state, one of ``pending``, ``active``, ``ended``."""
        return f"event:active:{self.tag}"

    @property
    def stock(self) -> str:
        """String: coupons left to issue."""
        return f"coupon:stock:{self.tag}"

    @property
    def issued(self) -> str:
        """Set of user IDs: the seed's duplicate check (SISMEMBER / SADD)."""
        return f"coupon:issued:{self.tag}"

    @property
    def holders(self) -> str:
        """Hash user ID -> coupons issued to that user: the hardened per-user limit."""
        return f"coupon:holders:{self.tag}"

    @property
    def queue(self) -> str:
        """Stream: the hardened per-coupon issue queue, one entry per issued coupon."""
        return f"coupon:queue:{self.tag}"

    @property
    def dead(self) -> str:
        """Stream: dead letters, the queue entries compensated instead of persisted."""
        return f"coupon:dead:{self.tag}"

    @property
    def channel(self) -> str:
        """Pub/sub channel of the coupon's status updates (a channel, not a key)."""
        return f"{STATUS_CHANNEL_PREFIX}{self.tag}"

    @staticmethod
    def of_channel(channel: str) -> str | None:
        """The coupon whose status channel this is, or None for any other channel."""
        prefix, suffix = STATUS_CHANNEL_PREFIX + "{", "}"
        if channel.startswith(prefix) and channel.endswith(suffix):
            return channel[len(prefix):-len(suffix)] or None
        return None

    @property
    def usage_channel(self) -> str:
        """Pub/sub channel of the coupon's usage events (applied, released)."""
        return f"{CHANNEL_NAMESPACE}coupon:usage:{self.tag}"

    @property
    def waiting(self) -> str:
        """Sorted set: the virtual waiting room, user -> arrival score."""
        return f"coupon:waiting:{self.tag}"

    @property
    def room(self) -> str:
        """Hash: each user's state in the waiting room (WAITING, LEFT, or the outcome
        told), and ``:closed`` (the reason) once the room closed. A user still WAITING
        in a closed room was closed on: see ``flows.waiting_room.told``."""
        return f"coupon:room:{self.tag}"

    @property
    def room_requests(self) -> str:
        """Hash: user -> the request id their admission will issue with."""
        return f"coupon:room-requests:{self.tag}"

    @property
    def room_channel(self) -> str:
        """Pub/sub channel of waiting-room news: ``room USER OUTCOME``, ``room closed``."""
        return f"{CHANNEL_NAMESPACE}coupon:room-events:{self.tag}"

    @property
    def admissions(self) -> str:
        """List: recent admission batches, ``at_ms:count``, newest first."""
        return f"coupon:admissions:{self.tag}"

    def request(self, request_id: str) -> str:
        """Hash: one hardened request's answer and status, the idempotency record."""
        return f"coupon:request:{self.tag}:{validate_id('request', request_id)}"
