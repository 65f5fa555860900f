import threading

import pytest

from couponsim.consumers import drain
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import UnknownRequest
from couponsim.flows.issue import IssueRequest, issue
from couponsim.flows.status import RequestState, RequestStatus
from couponsim.status_stream import watch_status

from .conftest import open_event


def test_the_stream_gives_the_current_status_then_the_final_one(system: SyncDriver) -> None:
    open_event(system, stock=3)
    system.run(issue(IssueRequest("c1", "u1", "r1"), 5))
    seen: list[RequestStatus] = []
    first_read = threading.Event()

    def watch() -> None:
        for status in watch_status(system.client, "c1", "r1", timeout_s=10):
            seen.append(status)
            first_read.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert first_read.wait(5)
    system.run(issue(IssueRequest("c1", "u2", "r2"), 6))
    drain(system, "c1")
    watcher.join(10)
    assert not watcher.is_alive()
    assert [s.state for s in seen] == [RequestState.PROCESSING, RequestState.COMPLETED]
    assert seen[-1].code.startswith("C-")


def test_a_final_status_ends_the_stream_at_once(system: SyncDriver) -> None:
    open_event(system, stock=3)
    system.run(issue(IssueRequest("c1", "u1", "r1"), 5))
    drain(system, "c1")
    statuses = list(watch_status(system.client, "c1", "r1", timeout_s=10))
    assert [s.state for s in statuses] == [RequestState.COMPLETED]


def test_the_stream_ends_at_its_timeout(driver: SyncDriver) -> None:
    open_event(driver, stock=3)
    driver.run(issue(IssueRequest("c1", "u1", "r1"), 5))
    ticks = iter(range(100))
    statuses = list(watch_status(driver.client, "c1", "r1", timeout_s=3,
                                 clock=lambda: float(next(ticks))))
    assert [s.state for s in statuses] == [RequestState.PROCESSING]


def test_an_unknown_request_is_a_typed_error(driver: SyncDriver) -> None:
    open_event(driver, stock=3)
    with pytest.raises(UnknownRequest):
        list(watch_status(driver.client, "c1", "nope", timeout_s=1))
