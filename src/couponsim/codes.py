"""Coupon codes, keyed with the deployment's secret, and the one keyed hash behind them
and behind the service's request ids and status proofs (service/keyed.py).

A code is an HMAC of the coupon and the request under the secret, so:

- it is the same every time it is made, in any process holding the secret: a
  consumer that crashes and redelivers an entry, or another consumer reclaiming it,
  stores the same code, and the checker recomputes the codes users were told;
- without the secret it cannot be made, nor told from random, by anyone who knows the
  coupon and the request id (the user does: it is in the 202 and its ``Location``).

The secret is the service's (``ServiceConfig.secret``, from ``COUPONSIM_SECRET``), the
one that keys its request ids and proofs: ``couponsim serve`` hands it to its service
processes and its worker, and ``couponsim worker`` reads it from the same variable, so
every process of a deployment makes the same codes. Simulations, benchmarks and tests
use :data:`SIMULATION_CODES`, whose secret is public (written below): never a
deployment's.
"""

import hmac
from dataclasses import dataclass, field

from couponsim.errors import InvalidInput

SIMULATION_SECRET = b"couponsim simulation codes: public, never a deployment's secret"
"""The fixed secret of simulated runs and tests, so a run's codes are reproducible."""

CODE_BYTES = 8
"""64 bits of HMAC: codes are unique per request and guessed with odds of 2^-64."""


def keyed_digest(secret: bytes, purpose: str, *fields: str) -> bytes:
    """HMAC-SHA256 of ``fields`` under ``secret``, separated by ``purpose``: a code, a
    request id and a proof made of the same fields are unrelated values. Fields are IDs
    (ids.ID_PATTERN), which hold no NUL, so the joined message is unambiguous."""
    message = "\0".join((purpose, *fields)).encode()
    return hmac.digest(secret, message, "sha256")   # one-shot, in C: on every press


@dataclass(frozen=True)
class CouponCodes:
    """Makes the coupon code of a request; every process of a deployment holds one with
    the deployment's secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise InvalidInput("coupon codes need a non-empty secret")

    def code(self, coupon_id: str, request_id: str) -> str:
        """The request's coupon code, e.g. ``C-3F9A0B1C2D3E4F50``."""
        digest = keyed_digest(self.secret, "code", coupon_id, request_id)[:CODE_BYTES]
        return f"C-{digest.hex().upper()}"


SIMULATION_CODES = CouponCodes(SIMULATION_SECRET)
"""The codes of simulated runs, benchmarks and tests (a public secret)."""
