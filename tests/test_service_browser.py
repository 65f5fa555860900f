"""The waiting-room page in a real headless Chromium (Debian's ``chromium``, driven by
playwright) against a real uvicorn on the embedded defaults (fake:// and SQLite):
what a user sees, checked in the DOM, and what happened, checked in Redis and the
database.

Without chromium or playwright the test skips, unless COUPONSIM_REQUIRE_BROWSER=1
(set by .ci/run, which installs chromium), which makes the absence a failure.
"""

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver, wall_clock_ms
from couponsim.flows.status import read_status
from couponsim.keys import CouponKeys
from couponsim.persistence.repository import Repository
from couponsim.service.config import ServiceConfig
from couponsim.verify import InvariantReport, check_invariants

from .conftest import _missing
from .service_helpers import live_service, start_now

REQUIRED_BY = "COUPONSIM_REQUIRE_BROWSER"
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError as exc:  # in the dev extra; an environment without it skips the page
    if os.environ.get(REQUIRED_BY) == "1":
        raise
    pytest.skip(f"no playwright: {exc}", allow_module_level=True)

ADMIN = "admin-secret"
OTHERS = ("early-1", "early-2", "early-3")
STOCK = len(OTHERS) + 1
"""A coupon for every one in the pre-queue: the shopper's outcome does not depend on
the pre-queue's shuffle, and the stock is gone once the room has served everyone."""
ANSWER_TIMEOUT_MS = 20_000
"""Most the page may take to show an answer (a bound, never the expected time)."""


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium, never a browser playwright downloads."""
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("chromium", REQUIRED_BY, FileNotFoundError("no chromium on PATH"))
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        launched.close()


def _waiting_rank(redis_url: str, coupon_id: str, user: str) -> int:
    """The user's place in line as Redis holds it (1-based): before the start no one
    is admitted, so the line stands still."""
    with connect(redis_url) as client:
        rank = client.zrank(CouponKeys(coupon_id).waiting, user)
    assert rank is not None, f"{user} is not in line"
    return int(rank) + 1


def _at_rest(driver: SyncDriver, coupon_id: str) -> InvariantReport:
    """The invariant report once every issued coupon is stored (bounded wait)."""
    for _ in range(200):
        report = driver.run(check_invariants(coupon_id, with_database=True))
        if report.in_flight == 0 and report.persisted == STOCK:
            return report
        time.sleep(0.05)
    raise AssertionError(f"the coupons were never all stored: {report}")


@pytest.mark.slow
def test_a_shopper_waits_in_line_on_the_page_then_gets_a_code_and_a_latecomer_a_reason(
        browser: Browser, tmp_path: Path) -> None:
    """Before the start the shopper lands in the pre-queue with three others: the page
    shows their place (as Redis has it) and an estimated wait, then their coupon code
    (the one stored for them); a latecomer pressing after the sell-out reads why not."""
    config = ServiceConfig(redis_url=f"fake://browser-{tmp_path.name}",
                           db_url=f"sqlite:///{tmp_path / 'browser.sqlite'}",
                           admin_token=ADMIN, stream_timeout_s=30)
    with live_service(config) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        starts_at_ms = wall_clock_ms() + 3_600_000     # started below, once the line is seen
        defined = client.post("/api/v1/admin/coupons",
                              json={"coupon_id": "flash", "stock": STOCK,
                                    "starts_at_ms": starts_at_ms},
                              headers={"Authorization": f"Bearer {ADMIN}"})
        assert defined.status_code == 201, defined.text
        for user in OTHERS:
            early = client.post("/api/v1/coupons/issue", json={"coupon_id": "flash"},
                                headers={"X-User-ID": user})
            assert early.status_code == 202 and early.json()["status"] == "QUEUED", early.text

        page: Page = browser.new_page()
        page.goto(live.url)
        page.fill("#user", "shopper")
        page.fill("#coupon", "flash")
        page.click("#get")
        state = page.locator("#state")
        expect(state).to_have_text(
            re.compile(r"In line: position [1-4] of 4, estimated wait about \d+ s"),
            timeout=ANSWER_TIMEOUT_MS)
        shown = re.search(r"position (\d) of", state.inner_text())
        assert shown is not None
        assert int(shown[1]) == _waiting_rank(config.redis_url, "flash", "shopper")
        start_now(config.redis_url, "flash")

        result = page.locator("#result")
        expect(result).to_have_text(re.compile(r"Your coupon: \S+"), timeout=ANSWER_TIMEOUT_MS)
        code = result.inner_text().removeprefix("Your coupon: ")
        assert state.inner_text() == ""  # the answer replaced the line

        page.fill("#user", "latecomer")
        page.click("#get")
        expect(result).to_have_text("No coupon: The coupon is sold out",
                                    timeout=ANSWER_TIMEOUT_MS)

        repository = Repository.from_url(config.db_url)
        driver = SyncDriver(connect(config.redis_url), config.redis_url, repository)
        try:
            report = _at_rest(driver, "flash")
            assert report.ok, report.checks
            assert [c.code for c in repository.coupons_of("shopper")] == [code]
            assert repository.coupons_of("latecomer") == []
            holders = driver.client.hgetall(CouponKeys("flash").holders)
            assert {user: holders.get(user) for user in ("shopper", "latecomer")} == {
                "shopper": "1", "latecomer": None}
            issued = driver.run(read_status("flash", holders["shopper#1"]))
            assert issued is not None and issued.code == code
        finally:
            driver.client.close()
            repository.engine.dispose()
