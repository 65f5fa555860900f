"""What the service makes with its secret: request ids and status proofs.

A request id is the server's, never the client's: a fresh one is random, and one
asked for with an ``Idempotency-Key`` is a keyed hash of the user, the coupon and
the key, so the same user repeating a key gets the same request (the issue script
replays its first answer) while another user sending the same key gets a request
of their own, and cannot tell whether the key was used. Either way the id is
unique across coupons and unguessable. The consumers key the coupon codes with the
same secret and the same hash (couponsim.codes), so knowing a request id is not
knowing its code.

A status proof goes in the ``Location`` of a 202 (a query parameter, since
``EventSource`` cannot send headers): the user, the coupon and an expiry, with an
HMAC of those and the request id. Whoever holds it may read that one status until
it expires; a caller who also presents an identity must be the proof's user. The
coupon travels in the proof, so the status path needs only the request id.
"""

import base64
import hmac
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from couponsim.codes import keyed_digest
from couponsim.ids import validate_id

SEPARATOR = "~"
"""Between a proof's fields: no ID may hold it (ids.ID_PATTERN), and URLs leave it as is."""
_MAC_BYTES = 16


@dataclass(frozen=True)
class StatusGrant:
    """What a valid proof allows: reading ``request_id`` of ``coupon_id`` as ``user_id``."""

    user_id: str
    coupon_id: str


class Keyed:
    """The service's secret-keyed values; every instance of one service shares the secret."""

    def __init__(self, secret: bytes, proof_ttl_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret, self._ttl_s, self._clock = secret, proof_ttl_s, clock

    def request_id(self, user_id: str, coupon_id: str, idempotency_key: str | None) -> str:
        """A fresh random id, or the one this user's key names for this coupon."""
        if idempotency_key is None:
            return _random_ids.next()
        return self._mac("request", user_id, coupon_id, idempotency_key).hex()

    def proof(self, request_id: str, user_id: str, coupon_id: str) -> str:
        expires = int(self._clock()) + self._ttl_s
        mac = self._mac("status", request_id, user_id, coupon_id, str(expires))
        return SEPARATOR.join((user_id, coupon_id, str(expires), _b64(mac)))

    def verify(self, request_id: str, proof: str | None) -> StatusGrant | None:
        """The grant of a valid, unexpired proof for this request; None for anything else
        (the caller answers exactly as for an unknown request)."""
        if proof is None:
            return None
        fields = proof.split(SEPARATOR)
        if len(fields) != 4 or not fields[2].isdigit():
            return None
        user_id, coupon_id, expires, mac = fields
        if int(expires) < self._clock():
            return None
        expected = _b64(self._mac("status", request_id, user_id, coupon_id, expires))
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        return StatusGrant(user_id, coupon_id)

    def _mac(self, purpose: str, *fields: str) -> bytes:
        return keyed_digest(self._secret, purpose, *fields)[:_MAC_BYTES]


class _RandomIds:
    """128-bit random ids, in hex, cut from ``os.urandom`` drawn for 256 ids at once: one
    system call per 256 presses instead of one per press, which was 5% of the issue
    route's CPU. A forked child empties its copy and draws its own."""

    _IDS_PER_DRAW = 256
    _lock: threading.Lock
    _drawn: str
    _at: int

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def next(self) -> str:
        with self._lock:
            if self._at == len(self._drawn):
                self._drawn, self._at = os.urandom(16 * self._IDS_PER_DRAW).hex(), 0
            self._at += 32
            return self._drawn[self._at - 32:self._at]

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._drawn, self._at = "", 0


_random_ids = _RandomIds()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def status_location(request_id: str, proof: str) -> str:
    """The status stream of a request, as the document names it, with its proof."""
    return f"/api/v1/coupons/status/{validate_id('request', request_id)}?proof={proof}"
