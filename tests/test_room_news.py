"""The room's news in the model: the clicks one round tells learn their outcomes from
batched reads of the real room, a user waiting in a closed room learns at once, and a
user who leaves sends their other clicks to read their own state."""

import numpy as np
import pytest
import simpy

from couponsim.drivers.sync import SyncDriver
from couponsim.flows.waiting_room import admit, join_room, room_outcome
from couponsim.sim import room_news
from couponsim.sim.room_news import RoomNews
from couponsim.sim.scenario import LatencySpec
from couponsim.sim.store import Store

from .conftest import open_event

START = 1_000_000


class ParkedClick:
    """A parked click that notes what it was told and when."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.told_with: list[simpy.Process | None] = []

    def told(self, reading: simpy.Process | None) -> None:
        self.told_with.append(reading)


def news_over(driver: SyncDriver) -> tuple[simpy.Environment, Store, RoomNews]:
    env = simpy.Environment()
    store = Store(env, LatencySpec(), driver, np.random.default_rng(1))
    return env, store, RoomNews(env, store, "c1", np.random.default_rng(2))


def test_a_round_tells_its_users_by_reads_of_at_most_a_batch_with_the_rooms_answers(
        driver: SyncDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(room_news, "READ_BATCH", 2)
    open_event(driver, stock=2, starts_at_ms=START)
    users = [f"u{n}" for n in range(5)]
    for n, user in enumerate(users):
        driver.run(join_room("c1", user, f"q-{user}", START + n))
    driver.run(admit("c1", 3, START + 10))       # two issued, the third sold out
    env, store, news = news_over(driver)
    clicks = [ParkedClick(user) for user in users] + [ParkedClick("u0")]   # u0 clicked twice
    for click in clicks:
        news.wait(click)
    news.tell(["u0", "u1", "u2"])
    env.run()
    told = clicks[:3] + clicks[5:]
    assert len({id(click.told_with[0]) for click in told}) == 2, "four clicks, two reads"
    assert [click.told_with for click in clicks[3:5]] == [[], []], "not told: still waiting"
    for click in told:
        reading = click.told_with[0]
        assert reading is not None
        assert reading.value[click.user] == driver.run(room_outcome("c1", click.user))
    assert len(store.redis.waits_ms) == 2, "the two reads, one call each"


def test_in_a_closed_room_a_user_who_comes_to_wait_reads_at_once(driver: SyncDriver) -> None:
    open_event(driver, stock=1, starts_at_ms=START)
    driver.run(join_room("c1", "early", "q-early", START))
    _env, _store, news = news_over(driver)
    early, late = ParkedClick("early"), ParkedClick("late")
    news.wait(early)
    news.close()
    news.wait(late)
    assert early.told_with and early.told_with[0] is not None, "told with the room's read"
    assert late.told_with == [None], "told to read their own, at once"


def test_a_user_who_leaves_sends_their_other_clicks_to_read_their_own(
        driver: SyncDriver) -> None:
    _env, _store, news = news_over(driver)
    first, second, other = ParkedClick("u1"), ParkedClick("u1"), ParkedClick("u2")
    for click in (first, second, other):
        news.wait(click)
    news.stop_waiting(first)                      # its patience ran out: it leaves
    news.leave("u1")
    news.tell(["u1", "u2"])
    assert (first.told_with, second.told_with) == ([], [None])
    assert len(other.told_with) == 1 and other.told_with[0] is not None


def test_the_room_counts_the_pages_that_wait_through_every_way_out(driver: SyncDriver) -> None:
    """The instances are charged the asks of the parked pages (sim/room_pages.py): the
    count must follow every click that parks and every way a parked click stops."""
    open_event(driver, stock=1, starts_at_ms=START)
    _env, _store, news = news_over(driver)
    clicks = {name: ParkedClick(user) for name, user in
              (("a", "u1"), ("b", "u1"), ("c", "u2"), ("d", "u3"), ("e", "u4"), ("f", "u5"))}
    for click in clicks.values():
        news.wait(click)
    assert news.pages == 6
    news.stop_waiting(clicks["a"])               # patience ran out
    news.stop_waiting(clicks["a"])               # twice changes nothing
    assert news.pages == 5
    news.leave("u1")                             # its other click goes to read
    assert news.pages == 4
    news.tell(["u2", "nobody"])
    assert news.pages == 3
    news.close()
    assert news.pages == 0
    news.wait(ParkedClick("late"))               # a closed room: read at once, not parked
    assert news.pages == 0
