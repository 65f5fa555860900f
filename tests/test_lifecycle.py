import pytest

from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidEventConfig, UnknownCoupon
from couponsim.event import CouponEvent, DiscountKind
from couponsim.flows import Variant, lifecycle
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest, issue
from couponsim.flows.lifecycle import EventState, TransitionVerdict, WarmupOutcome
from couponsim.keys import CouponKeys
from couponsim.verify import check_invariants

from .conftest import Backend, open_event


def issue_all(driver: SyncDriver, variant: Variant, users: list[str], tag: str) -> list[str]:
    flow = ISSUE_FLOWS[variant]
    return [driver.run(flow(IssueRequest("c1", user, f"{tag}-{user}"), 10)).outcome
            for user in users]


def test_warm_up_stores_the_event_pending_with_its_stock(driver: SyncDriver,
                                                          backend: Backend) -> None:
    event = CouponEvent("c1", stock=1000, discount_value=10_000, name="Black Friday")
    assert driver.run(lifecycle.warm_up(event)) is WarmupOutcome.WARMED
    keys = CouponKeys("c1")
    assert backend.client.get(keys.stock) == "1000"
    assert backend.client.get(keys.active) == EventState.PENDING
    assert CouponEvent.from_fields(backend.client.hgetall(keys.info)) == event


def test_warm_up_again_before_the_start_replaces_the_definition(driver: SyncDriver,
                                                                backend: Backend) -> None:
    driver.run(lifecycle.warm_up(CouponEvent("c1", stock=1000)))
    assert driver.run(lifecycle.warm_up(CouponEvent("c1", stock=800))) is WarmupOutcome.REWARMED
    assert backend.client.get(CouponKeys("c1").stock) == "800"


def test_warm_up_rerun_mid_event_changes_nothing(driver: SyncDriver, backend: Backend) -> None:
    event = open_event(driver, stock=3)
    assert issue_all(driver, Variant.HARDENED, ["u1", "u2"], "a") == ["ISSUED", "ISSUED"]
    assert driver.run(lifecycle.warm_up(event)) is WarmupOutcome.STARTED
    assert backend.client.get(CouponKeys("c1").stock) == "1"
    assert backend.client.get(CouponKeys("c1").active) == EventState.ACTIVE
    assert issue_all(driver, Variant.HARDENED, ["u3", "u4"], "b") == ["ISSUED", "SOLD_OUT"]
    assert driver.run(check_invariants("c1")).ok


def test_the_seed_warm_up_rerun_mid_event_oversells(driver: SyncDriver) -> None:
    """The workbench shows the seed's flaw: its plain SET puts the stock back."""
    event = open_event(driver, Variant.SEED, stock=3)
    assert issue_all(driver, Variant.SEED, ["u1", "u2", "u3"], "a") == ["ISSUED"] * 3
    driver.run(lifecycle.warm_up_seed(event))
    driver.run(lifecycle.activate_seed("c1"))
    assert issue_all(driver, Variant.SEED, ["u4", "u5", "u6"], "b") == ["ISSUED"] * 3
    report = driver.run(check_invariants("c1"))
    assert (report.issued, report.oversold, report.ok) == (6, 3, False)


def test_activation_and_end_move_only_forward(driver: SyncDriver) -> None:
    driver.run(lifecycle.warm_up(CouponEvent("c1", stock=5)))
    first = driver.run(lifecycle.activate("c1"))
    assert (first.verdict, first.before) == (TransitionVerdict.CHANGED, EventState.PENDING)
    assert driver.run(lifecycle.activate("c1")).verdict is TransitionVerdict.UNCHANGED
    assert driver.run(lifecycle.end("c1")).verdict is TransitionVerdict.CHANGED
    refused = driver.run(lifecycle.activate("c1"))
    assert (refused.verdict, refused.before) == (TransitionVerdict.REFUSED, EventState.ENDED)
    assert issue_all(driver, Variant.HARDENED, ["u1"], "a") == ["NOT_ACTIVE"]


@pytest.mark.parametrize("flow", [lifecycle.activate, lifecycle.end])
def test_transitions_of_an_unknown_coupon_are_refused_without_writes(
        flow: object, driver: SyncDriver, backend: Backend) -> None:
    with pytest.raises(UnknownCoupon, match="nope"):
        driver.run(flow("nope"))  # type: ignore[operator]
    assert backend.client.dbsize() == 0


def test_issuing_respects_the_event_window(driver: SyncDriver) -> None:
    open_event(driver, starts_at_ms=1_000, ends_at_ms=2_000)
    at = [driver.run(issue(IssueRequest("c1", f"u{t}", f"r{t}"), t)).outcome
          for t in (999, 1_000, 1_999, 2_000)]
    assert at == ["NOT_ACTIVE", "ISSUED", "ISSUED", "NOT_ACTIVE"]


def test_a_request_refused_as_not_active_can_be_sent_again_later(driver: SyncDriver) -> None:
    driver.run(lifecycle.warm_up(CouponEvent("c1", stock=5)))
    request = IssueRequest("c1", "u1", "r1")
    assert driver.run(issue(request, 5)).outcome is IssueOutcome.NOT_ACTIVE
    driver.run(lifecycle.activate("c1"))
    assert driver.run(issue(request, 6)).outcome is IssueOutcome.ISSUED


def test_purge_forgets_every_key_of_the_coupon_only(driver: SyncDriver, backend: Backend) -> None:
    open_event(driver, Variant.SEED, coupon_id="c1")
    open_event(driver, Variant.SEED, coupon_id="c2")
    issue_all(driver, Variant.SEED, ["u1"], "a")
    driver.run(ISSUE_FLOWS[Variant.SEED](IssueRequest("c2", "u1", "b"), 1))
    driver.run(lifecycle.purge("c1"))
    assert not [key for key in backend.client.keys() if "{c1}" in key]
    assert driver.run(check_invariants("c2")).issued == 1
    with pytest.raises(UnknownCoupon):
        driver.run(check_invariants("c1"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"stock": 0}, "stock"), ({"stock": -5}, "stock"), ({"stock": 1.5}, "stock"),
     ({"per_user_limit": 0}, "per_user_limit"), ({"discount_value": -1}, "discount_value"),
     ({"discount_kind": "bogus"}, "discount_kind"),
     ({"discount_kind": DiscountKind.PERCENT, "discount_value": 150}, "percentage"),
     ({"starts_at_ms": 10, "ends_at_ms": 5}, "ends_at_ms"), ({"coupon_id": "a:b"}, "coupon ID")],
)
def test_bad_event_definitions_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEventConfig if "coupon_id" not in fields else ValueError,
                       match=message):
        CouponEvent(**{"coupon_id": "c1", "stock": 10, **fields})  # type: ignore[arg-type]
