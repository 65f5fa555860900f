"""The service's sold-out flag: once an instance has heard SOLD_OUT from Redis, a fresh
request for that coupon is answered without a round trip, until news of stock coming
back clears the flag. A retried request id still reaches the script, which replays
what it answered first."""

from couponsim.drivers.sync import SyncDriver
from couponsim.flows.gateway import Gateway, GatewayAnswer, Path, gateway_issue
from couponsim.flows.issue import IssueOutcome, IssueRequest
from couponsim.sold_out import SoldOutFlags

from .conftest import open_event


def _answer_without_effects(gateway: Gateway, request: IssueRequest) -> GatewayAnswer | None:
    """The gateway's answer if it gave one before asking for any effect, else None."""
    flow = gateway_issue(gateway, request, fresh=True)
    try:
        next(flow)
    except StopIteration as done:
        answer: GatewayAnswer = done.value
        return answer
    flow.close()
    return None


def test_a_flag_is_raised_only_if_no_stock_came_back_since_the_call_began() -> None:
    flags = SoldOutFlags()
    before = flags.epoch("c1")
    flags.stock_returned("c1")            # a unit came back while the call was in flight
    flags.saw_sold_out("c1", before)
    assert "c1" not in flags, "the SOLD_OUT answer is older than the returned unit"
    flags.saw_sold_out("c1", flags.epoch("c1"))
    assert "c1" in flags and "c2" not in flags
    flags.stock_returned("c1")
    assert "c1" not in flags
    flags.saw_sold_out("c1", flags.epoch("c1"))
    started = flags.epoch("c2")
    flags.forget_all()                    # the hub lost its subscription: news was missed
    assert "c1" not in flags
    flags.saw_sold_out("c2", started)
    assert "c2" not in flags


def test_a_flag_lasts_a_second_at_most_in_case_news_never_comes() -> None:
    now = [100.0]
    flags = SoldOutFlags(max_age_s=1.0, clock=lambda: now[0])
    flags.saw_sold_out("c1", flags.epoch("c1"))
    now[0] += 0.9
    assert "c1" in flags
    now[0] += 0.2
    assert "c1" not in flags, "one request asks Redis again"


def test_after_a_sold_out_answer_fresh_requests_cost_no_redis_call(driver: SyncDriver) -> None:
    open_event(driver, stock=1)
    gateway = Gateway(sold_out=SoldOutFlags())
    assert driver.run(gateway_issue(gateway, IssueRequest("c1", "u1", "r1"), fresh=True)
                      ).outcome is IssueOutcome.ISSUED
    assert _answer_without_effects(gateway, IssueRequest("c1", "u2", "r2")) is None, \
        "nothing is known yet: Redis is asked"
    assert driver.run(gateway_issue(gateway, IssueRequest("c1", "u2", "r2"), fresh=True)
                      ).outcome is IssueOutcome.SOLD_OUT

    flagged = _answer_without_effects(gateway, IssueRequest("c1", "u3", "r3"))
    assert flagged == GatewayAnswer("r3", Path.SOLD_OUT_FLAG, outcome=IssueOutcome.SOLD_OUT)
    assert _answer_without_effects(gateway, IssueRequest("c2", "u3", "r4")) is None, \
        "another coupon is not flagged"
    replay = driver.run(gateway_issue(gateway, IssueRequest("c1", "u1", "r1")))
    assert replay.outcome is IssueOutcome.ISSUED, "a retried id replays its first answer"

    gateway.sold_out.stock_returned("c1")  # type: ignore[union-attr]
    assert _answer_without_effects(gateway, IssueRequest("c1", "u3", "r3")) is None


def test_without_flags_every_request_asks_redis(driver: SyncDriver) -> None:
    open_event(driver, stock=1)
    gateway = Gateway()
    answers = [driver.run(gateway_issue(gateway, IssueRequest("c1", user, f"r-{user}"),
                                        fresh=True)).outcome for user in ("u1", "u2", "u3")]
    assert answers == [IssueOutcome.ISSUED, IssueOutcome.SOLD_OUT, IssueOutcome.SOLD_OUT]
    assert _answer_without_effects(gateway, IssueRequest("c1", "u4", "r4")) is None
