"""The races the explorer knows: each a store to prepare, the actors whose effects
it interleaves, what happens after them (a consumer restart), and how to judge.

Time-based events are actors too: "the lock's TTL expires" is one effect (the
key disappears) that the schedule places like any other.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from couponsim.consumers import drain, drain_seed
from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Flow, Variant, lifecycle
from couponsim.flows.consume import CrashPoint, consume_batch, consume_seed_batch, load_event
from couponsim.flows.issue import ISSUE_FLOWS, IssueRequest
from couponsim.flows.redeem import APPLY_FLOWS, lock_expires
from couponsim.pricing import ApplyRequest

COUPON = "explore"
NOW = 1_000


@dataclass(frozen=True)
class Actor:
    name: str
    flow: Flow[Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    setup: Callable[[SyncDriver, Variant], dict[str, Any]]
    """Prepare the store before the actors start; returns what the actors need."""
    actors: Callable[[Variant, dict[str, Any]], list[Actor]]
    after: Callable[[SyncDriver, Variant], None]
    """What happens once every actor is done (a restarted consumer drains)."""
    with_database: bool


def _open(driver: SyncDriver, variant: Variant, stock: int) -> None:
    driver.run(lifecycle.open_event(CouponEvent(COUPON, stock=stock), variant))


def _issue(variant: Variant, user: str, request: str) -> Actor:
    flow = ISSUE_FLOWS[variant](IssueRequest(COUPON, user, request), NOW)
    return Actor(f"{user}:{request}", flow)


def _nothing(_driver: SyncDriver, _variant: Variant) -> None:
    return None


def _restart_consumers(driver: SyncDriver, variant: Variant) -> None:
    if variant is Variant.SEED:
        drain_seed(driver, clock_ms=lambda: NOW)
    else:
        drain(driver, COUPON, "restarted", clock_ms=lambda: NOW)


def _double_click_setup(driver: SyncDriver, variant: Variant) -> dict[str, Any]:
    _open(driver, variant, stock=5)
    return {}


def _double_click_actors(variant: Variant, _context: dict[str, Any]) -> list[Actor]:
    return [_issue(variant, "u1", "click1"), _issue(variant, "u1", "click2")]


def _crash_setup(driver: SyncDriver, variant: Variant) -> dict[str, Any]:
    _open(driver, variant, stock=5)
    for user in ("u1", "u2"):
        driver.run(ISSUE_FLOWS[variant](IssueRequest(COUPON, user, f"r-{user}"), NOW))
    return {"event": driver.run(load_event(COUPON))}


def _crash_actors(variant: Variant, context: dict[str, Any]) -> list[Actor]:
    if variant is Variant.SEED:
        crashing = consume_seed_batch({}, NOW, crash_at=CrashPoint.AFTER_READ)
        working = consume_seed_batch({}, NOW)
    else:
        crashing = consume_batch(context["event"], "doomed", NOW, crash_at=CrashPoint.AFTER_READ)
        working = consume_batch(context["event"], "worker", NOW)
    return [Actor("consumer crashes", crashing), _issue(variant, "u3", "r-u3"),
            Actor("consumer", working)]


def _redemption_setup(driver: SyncDriver, variant: Variant) -> dict[str, Any]:
    _open(driver, variant, stock=1)
    driver.run(ISSUE_FLOWS[variant](IssueRequest(COUPON, "u1", "r-u1"), NOW))
    _restart_consumers(driver, variant)
    assert driver.repository is not None
    return {"code": driver.repository.coupons_of("u1")[0].code}


def _checkouts(variant: Variant, code: str) -> list[Actor]:
    return [Actor(f"checkout {order}",
                  APPLY_FLOWS[variant](ApplyRequest("u1", order, code, 50_000), NOW))
            for order in ("orderA", "orderB")]


def _redemption_actors(variant: Variant, context: dict[str, Any]) -> list[Actor]:
    return _checkouts(variant, context["code"])


def _lock_expiry_actors(variant: Variant, context: dict[str, Any]) -> list[Actor]:
    return [*_checkouts(variant, context["code"]),
            Actor("lock TTL expires", lock_expires(context["code"], variant))]


def _warmup_setup(driver: SyncDriver, variant: Variant) -> dict[str, Any]:
    _open(driver, variant, stock=2)
    return {}


def _warmup_actors(variant: Variant, _context: dict[str, Any]) -> list[Actor]:
    return [_issue(variant, "u1", "r-u1"), _issue(variant, "u2", "r-u2"),
            Actor("scheduler re-runs warm-up",
                  lifecycle.open_event(CouponEvent(COUPON, stock=2), variant)),
            _issue(variant, "u3", "r-u3")]


def _overwrite_setup(driver: SyncDriver, variant: Variant) -> dict[str, Any]:
    _open(driver, variant, stock=5)
    return {"event": driver.run(load_event(COUPON))}


def _overwrite_actors(variant: Variant, context: dict[str, Any]) -> list[Actor]:
    consumer = (consume_seed_batch({}, NOW) if variant is Variant.SEED
                else consume_batch(context["event"], "worker", NOW))
    return [_issue(variant, "u1", "r-u1"), Actor("consumer polls", consumer)]


SCENARIOS = {scenario.name: scenario for scenario in (
    Scenario("double-click", "one user's two clicks in flight at once",
             _double_click_setup, _double_click_actors, _nothing, with_database=False),
    Scenario("consumer-crash", "a consumer dies right after taking a batch; "
             "a restarted one drains the rest",
             _crash_setup, _crash_actors, _restart_consumers, with_database=True),
    Scenario("concurrent-redemption", "two orders apply one coupon at once",
             _redemption_setup, _redemption_actors, _nothing, with_database=True),
    Scenario("lock-expiry", "two orders apply one coupon; the checkout lock's TTL "
             "runs out somewhere in between",
             _redemption_setup, _lock_expiry_actors, _nothing, with_database=True),
    Scenario("warm-up-rerun", "the warm-up scheduler runs again mid-event",
             _warmup_setup, _warmup_actors, _nothing, with_database=False),
    Scenario("double-click-stored", "one user's two clicks in flight at once, then the "
             "consumers store what was queued",
             _double_click_setup, _double_click_actors, _restart_consumers, with_database=True),
    Scenario("status-overwrite", "a consumer polls while a request is being issued; "
             "a restarted consumer drains the rest",
             _overwrite_setup, _overwrite_actors, _restart_consumers, with_database=True),
)}
