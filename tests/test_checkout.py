"""Story 3 as a job: concurrent applies under an expiring lock, cancels, expiry."""

from pathlib import Path

import pytest

from couponsim.checkout import NOT_HELD, CheckoutConfig, run_checkout
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.flows import Variant
from couponsim.persistence.repository import Repository


def embedded(tmp_path: Path, name: str) -> SyncDriver:
    return SyncDriver.from_url(f"fake://checkout-{name}", Repository.from_url(
        f"sqlite:///{tmp_path / name}.sqlite"))


def test_the_hardened_checkout_uses_each_coupon_once_and_gives_it_back_once(
        tmp_path: Path) -> None:
    config = CheckoutConfig(users=40, orders_per_coupon=3, cancel_share=0.5, late_share=0.25)
    result = run_checkout(config, embedded(tmp_path, "hardened"))
    assert result.report.ok, result.report.checks
    attempts = result.attempts
    applied = attempts[(attempts.phase == "apply") & (attempts.outcome == "APPLIED")]
    assert applied.user.is_unique and len(applied) == 30, "one order per on-time coupon"
    cancels = attempts[attempts.phase == "cancel"].groupby("order").outcome.apply(sorted)
    assert len(cancels) == 15 and all(c == [NOT_HELD, "RELEASED"] for c in cancels)
    assert set(attempts[attempts.phase == "apply again"].outcome) == {"APPLIED"}
    assert list(attempts[attempts.phase == "after expiry"].outcome) == ["EXPIRED"] * 10


def test_the_seed_checkout_under_an_expiring_lock_uses_a_coupon_twice(tmp_path: Path) -> None:
    result = run_checkout(CheckoutConfig(users=40, variant=Variant.SEED),
                          embedded(tmp_path, "seed"))
    findings = result.report.redemptions
    assert findings is not None and findings.used_twice and not result.report.ok


@pytest.mark.slow
def test_a_checkout_replays_from_its_seed(tmp_path: Path) -> None:
    config = CheckoutConfig(users=20)
    first = run_checkout(config, embedded(tmp_path, "first"))
    second = run_checkout(config, embedded(tmp_path, "second"))
    assert first.attempts.equals(second.attempts)


@pytest.mark.parametrize("fields", [{"users": 0}, {"cancel_share": 1.5}, {"late_share": -0.1}])
def test_bad_checkout_settings_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        CheckoutConfig(**fields)  # type: ignore[arg-type]
