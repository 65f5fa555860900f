"""Coupon codes are a keyed hash: the same in every process holding the deployment's
secret (so a redelivered entry is stored with the same code), different under another
secret, and not to be made from the coupon and the request id alone."""

import hashlib
import inspect
import json
import os
import subprocess
import sys

import pytest

from couponsim.codes import SIMULATION_CODES, CouponCodes
from couponsim.consumers import drain
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InjectedCrash, InvalidInput
from couponsim.flows import consume
from couponsim.flows.consume import ConsumerConfig, CrashPoint, consume_batch, load_event
from couponsim.flows.issue import IssueRequest, issue
from couponsim.service.config import SECRET_ENV, ServiceConfig
from couponsim.verify import check_invariants

from .conftest import open_event

NOW = 1_000
_IN_ANOTHER_PROCESS = """
import json, sys
from couponsim.service.config import ServiceConfig
codes = ServiceConfig.from_env().codes()
print(json.dumps([codes.code(coupon, request) for coupon, request in json.loads(sys.argv[1])]))
"""


def test_two_secrets_give_the_same_request_different_codes() -> None:
    one, other = CouponCodes(b"deployment one"), CouponCodes(b"deployment two")
    pairs = [("c1", "r1"), ("bf-2026", "0f8e2c9a7b6d4e3f1a2b3c4d5e6f7a8b")]
    for coupon, request in pairs:
        assert one.code(coupon, request) != other.code(coupon, request)
        assert one.code(coupon, request) == CouponCodes(b"deployment one").code(coupon, request)
    assert one.code("c1", "r1").startswith("C-") and len(one.code("c1", "r1")) == 18
    assert len({one.code("c1", f"r{n}") for n in range(10_000)}) == 10_000


def test_the_same_secret_in_another_process_gives_the_same_codes() -> None:
    """A service's worker and a ``couponsim worker`` elsewhere read COUPONSIM_SECRET."""
    pairs = [["c1", "r1"], ["c1", "r2"], ["bf-2026", "abc"]]
    secret = "a deployment's secret"
    made = subprocess.run(
        [sys.executable, "-c", _IN_ANOTHER_PROCESS, json.dumps(pairs)], check=True,
        capture_output=True, text=True, env=os.environ | {SECRET_ENV: secret})
    here = ServiceConfig(secret=secret).codes()
    assert json.loads(made.stdout) == [here.code(c, r) for c, r in pairs]


def test_no_code_is_made_from_the_coupon_and_the_request_alone() -> None:
    """The old unkeyed derivation is gone; what makes a code needs a (non-empty) secret,
    and neither the ids' plain hash nor the public simulation secret gives a
    deployment's code."""
    assert not hasattr(consume, "coupon_code")
    assert list(inspect.signature(CouponCodes).parameters) == ["secret"]
    with pytest.raises(InvalidInput):
        CouponCodes(b"")
    deployment = ServiceConfig().codes()          # a random secret, as serve makes one
    code = deployment.code("c1", "r1")
    unkeyed = hashlib.blake2b(b"c1/r1", digest_size=8).hexdigest().upper()
    assert code not in (f"C-{unkeyed}", SIMULATION_CODES.code("c1", "r1"))
    assert repr(deployment) == "CouponCodes()", "the secret never reaches a log"


@pytest.mark.parametrize("point", [CrashPoint.MID_BATCH, CrashPoint.AFTER_COMMIT])
def test_a_redelivered_entry_is_stored_with_the_code_it_was_first_given(
        system: SyncDriver, point: CrashPoint) -> None:
    """A consumer keyed with the deployment's secret crashes; a restarted one (another
    object, as another process would hold) stores and tells the same codes."""
    secret = b"the deployment's secret"
    open_event(system, stock=10)
    for n in range(6):
        system.run(issue(IssueRequest("c1", f"u{n}", f"r{n}"), NOW))
    event = system.run(load_event("c1"))
    config = ConsumerConfig(batch_size=6, claim_idle_ms=0)
    with pytest.raises(InjectedCrash):
        system.run(consume_batch(event, "doomed", NOW, config, point, CouponCodes(secret)))
    report = system.run(check_invariants("c1", with_database=True))
    assert report.in_flight == 6
    restarted = CouponCodes(secret)
    drain(system, "c1", "restarted", config, codes=restarted)
    stored = {c.request_id: c.code for c in system.repository.coupons_of_event("c1")}  # type: ignore[union-attr]
    assert stored == {f"r{n}": restarted.code("c1", f"r{n}") for n in range(6)}
    assert system.run(check_invariants("c1", with_database=True)).ok
