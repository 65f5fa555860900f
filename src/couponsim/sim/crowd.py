"""The crowd: users arrive from the traffic model, some click twice, each asks the
service (and, when engaged, the gateway), then waits for the final answer of an
accepted request. Winners go on to check out (:class:`Checkouts`)."""

from collections.abc import Callable, Generator
from enum import Enum
from typing import Any

import simpy

from couponsim.flows import Variant
from couponsim.flows.gateway import gateway_issue, settle_held
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest
from couponsim.flows.status import read_seed_status, read_status
from couponsim.flows.waiting_room import FINAL_STATES, leave_room, room_outcome
from couponsim.sim.checkouts import Checkouts
from couponsim.sim.records import FORGOTTEN, START_MS, RequestRecord
from couponsim.sim.room_news import Outcomes
from couponsim.sim.traffic import Click, Kind, plan
from couponsim.sim.world import World

MAX_EARLY_RETRIES = 10


class Woke(Enum):
    """Why a parked user goes on without the room's news."""

    RAN_OUT = "patience or the status timeout ran out"
    ALONE = "another click of theirs left the room: each reads their own state"


class Crowd:
    def __init__(self, world: World, checkouts: Checkouts,
                 progress: Callable[[int], None] | None = None) -> None:
        self.world = world
        self.env = world.env
        self.checkouts = checkouts
        self.progress = progress or (lambda _n: None)
        """Called with 1 each time a user (not a second click) has their final answer."""
        self.sold_out_seen = False
        self.clicks_live = 0

    def start(self) -> None:
        for click in plan(self.world.scenario.traffic, self.world.rng["arrivals"],
                          self.world.rng["clicks"]):
            self._press(click)

    def _press(self, click: Click) -> None:
        """Start a click: it is live until its user knows (:meth:`_knows`)."""
        self.clicks_live += 1
        self.env.process(self._click(click))

    def _click(self, click: Click) -> Generator[simpy.Event, Any, None]:
        """One click, and what its user does about the answer.

        A user told the sale has not started presses again a moment later (a new
        request), as people do. A bot does not wait for anything.
        """
        traffic = self.world.scenario.traffic
        behaviour = self.world.rng["behaviour"]
        retries = click.kind is Kind.FIRST and behaviour.random() < traffic.retry_share
        patience_ms = (float(behaviour.exponential(traffic.patience_s * 1000))
                       if click.kind is Kind.FIRST and behaviour.random() < traffic.abandon_share
                       else None)
        yield self.env.timeout(max(0.0, START_MS + click.at_ms - self.env.now))
        request_id, kind = click.request, click.kind
        for attempt in range(MAX_EARLY_RETRIES + 1):
            record: RequestRecord
            if retries:                      # the answer races the user's patience
                asked = self.env.process(self._ask(click.user, request_id, kind))
                yield asked | self.env.timeout(traffic.client_timeout_ms)
                if not asked.triggered:      # no answer yet: press again, once
                    retries = False
                    self._press(Click(self.env.now - START_MS, click.user,
                                      f"{click.request}-retry", Kind.RETRY))
                record = yield asked
            else:
                record = yield from self._ask(click.user, request_id, kind)
            if record.answer != IssueOutcome.NOT_ACTIVE.value or kind is Kind.BOT:
                break
            record.final_state, record.final_ms = record.answer, record.answered_ms
            yield self.env.timeout(float(self.world.rng["clicks"].uniform(500, 1_500)))
            request_id, kind = f"{click.request}-{attempt + 1}", Kind.AGAIN_EARLY
        deadline = self.env.now + traffic.status_timeout_s * 1000
        waiter = Waiter(self, click, record, retries, deadline,
                        deadline if patience_ms is None else min(deadline,
                                                                 self.env.now + patience_ms))
        if kind is Kind.BOT:
            record.final_state, record.final_ms = record.answer, record.answered_ms
            self._knows(waiter)
            return
        yield from self._await_final(waiter)

    def _ask(self, user: str, request_id: str,
             kind: Kind) -> Generator[simpy.Event, Any, RequestRecord]:
        scenario, run, store = self.world.scenario, self.world.run, self.world.store
        record = RequestRecord(user, request_id, self.env.now, kind=kind.value)
        run.requests.append(record)
        request = IssueRequest(scenario.event.coupon_id, user, request_id)
        half_trip_ms = (scenario.service.client_rtt_ms / 2
                        if self.world.instances is not None else 0.0)
        if half_trip_ms:
            yield self.env.timeout(half_trip_ms)
        queued_since = yield from self._on_an_instance(record)
        if scenario.sold_out_flag and self.sold_out_seen:
            record.path, record.answer = "sold-out flag", IssueOutcome.SOLD_OUT.value
        elif run.gateway is not None:
            shuffle = int(self.world.rng["shuffle"].integers(0, 1_000_000))
            answer = yield from store.flow(gateway_issue(run.gateway, request, shuffle,
                                                         queued_since_ms=queued_since), record)
            if answer.room_state == IssueOutcome.ISSUED:     # as the service answers it
                answer = yield from store.flow(settle_held(answer, request.coupon_id), record)
            record.path, record.room_position = answer.path.value, answer.position
            record.answer = answer.outcome.value if answer.outcome else answer.room_state
        else:
            result = yield from store.flow(
                ISSUE_FLOWS[scenario.variant](request, int(self.env.now)), record)
            record.path, record.answer = "direct", result.outcome.value
        if half_trip_ms:
            yield self.env.timeout(half_trip_ms)
        record.answered_ms = self.env.now
        if record.answer == IssueOutcome.SOLD_OUT.value:
            self.sold_out_seen = True
        return record

    def _on_an_instance(self, record: RequestRecord
                        ) -> Generator[simpy.Event, Any, int | None]:
        """The request's CPU on a service instance, after its turn in their queue; when
        it reached the service (None where the instances are not modelled)."""
        instances = self.world.instances
        if instances is None:
            return None
        arrived = self.env.now
        cpu_ms = self.world.scenario.service.cpu_ms
        start = self.world.cpu_burst(cpu_ms, instances)
        record.instance_wait_ms = start - arrived
        yield self.env.timeout(start + cpu_ms - arrived)
        return int(arrived)

    def _await_final(self, waiter: "Waiter", woke: Woke | None = None
                     ) -> Generator[simpy.Event, Any, None]:
        """Wait until the user knows: a stored coupon, or a final refusal; a user whose
        status never comes gives up after ``status_timeout_s`` (GAVE_UP), and an
        impatient one leaves the waiting room (LEFT). A request answered ISSUED whose
        status the store no longer knows (only after a failover: the answer and the
        record are written together) is FORGOTTEN, as the service's "no such
        request" tells its user at once.

        An accepted request's status is polled. A user in the waiting room is pushed
        the news instead (the room publishes every outcome): a room of 100,000 polling
        every second would be a load no real room carries. Until then they wait
        without a process (:meth:`Waiter.park`), and learn their state from one read
        with everyone told at the same moment (:class:`RoomNews`). ``woke`` says why a
        parked user goes on by a process of their own.
        """
        scenario, store = self.world.scenario, self.world.store
        coupon, record = scenario.event.coupon_id, waiter.record
        while self.env.now < waiter.deadline:
            if record.answer == "ISSUED":
                status_of = record.status_of or record.request
                status = yield from store.flow(
                    read_seed_status(status_of) if scenario.variant is Variant.SEED
                    else read_status(coupon, status_of), record)
                if status is None:
                    record.final_state, record.final_ms = FORGOTTEN, self.env.now
                    self._knows(waiter)
                    return
                if status.final:
                    record.final_state, record.final_ms = status.state.value, self.env.now
                    record.code = status.code
                    self._knows(waiter)
                    return
            elif record.answer in ("WAITING", "ADMITTED"):
                if woke is None:
                    waiter.park()
                    return
                if woke is Woke.RAN_OUT and waiter.leave_at < waiter.deadline:
                    left = yield from store.flow(leave_room(coupon, record.user), record)
                    if left:                     # the user's other clicks leave with them
                        self.world.room_news.leave(record.user)
                    waiter.leave_at = waiter.deadline   # else admitted meanwhile
                woke = None
                state, request_id = yield from store.flow(room_outcome(coupon, record.user),
                                                          record)
                if self._learn(waiter, state, request_id):
                    return
                continue
            else:
                record.final_state, record.final_ms = record.answer, record.answered_ms
                self._knows(waiter)
                return
            yield self.env.timeout(scenario.traffic.status_poll_ms)
        record.final_state, record.final_ms = "GAVE_UP", self.env.now
        self._knows(waiter)

    def _learn(self, waiter: "Waiter", state: str | None, request_id: str | None) -> bool:
        """Take the room's answer to ``waiter``'s user; True if they now know (an
        issued coupon still has its status to wait for)."""
        record = waiter.record
        if state == "LEFT":
            record.final_state, record.final_ms = "LEFT", self.env.now
        elif state in FINAL_STATES:
            record.answer, record.status_of = state, request_id or ""
            if state == "ISSUED":
                return False
            record.final_state, record.final_ms = state, self.env.now   # after the wait
        else:
            return False
        self._knows(waiter)
        return True

    def told(self, waiter: "Waiter", outcomes: Outcomes) -> None:
        """A parked user's outcome from the read of everyone told with them: most end
        here, without a process; one with a coupon issued goes on to poll its status,
        one still waiting waits on."""
        state, request_id = outcomes[waiter.record.user]
        waiter.record.redis_commands += 1           # their part of that call
        until_seen = self._until_the_page_asks(waiter.record)
        if until_seen:
            self.env.timeout(until_seen).callbacks.append(
                lambda _asked: self._take(waiter, state, request_id))
        else:
            self._take(waiter, state, request_id)

    def _until_the_page_asks(self, record: RequestRecord) -> float:
        """How long until the user's page next asks the room: at once on the answer, then
        every ``room_poll_ms`` (the time its requests take is not counted)."""
        poll_ms = self.world.scenario.traffic.room_poll_ms
        if not poll_ms or record.answered_ms is None:
            return 0.0
        return -(self.env.now - record.answered_ms) % poll_ms

    def _take(self, waiter: "Waiter", state: str | None, request_id: str | None) -> None:
        self.world.room_asked()      # the ask that saw the news
        if not self._learn(waiter, state, request_id):
            self.env.process(self._await_final(waiter))

    def _knows(self, waiter: "Waiter") -> None:
        """The click's user has their final answer: a retrying user whose request
        failed presses again, a winner goes on to check out, and the last click to
        end ends the issuing traffic (consumers and admissions stop after that;
        checkouts go on)."""
        click, record = waiter.click, waiter.record
        if waiter.retries and record.final_state in ("FAILED", "GAVE_UP", FORGOTTEN):
            self._press(Click(self.env.now - START_MS, click.user, f"{click.request}-retry",
                              Kind.RETRY))
        if click.kind is Kind.FIRST:
            self.progress(1)
        if record.final_state == "COMPLETED":
            self.checkouts.start(record)
        self.clicks_live -= 1
        if not self.clicks_live:
            self.world.traffic_done.succeed()


class Waiter:
    """A click whose user waits in the room: parked without a process (the crowd of a
    Story 2 waits here, and a process with its frames and events for each was most
    of a run's memory), until the room's news, their patience or the status timeout
    ends the wait."""

    __slots__ = ("click", "crowd", "deadline", "leave_at", "parked", "record", "retries",
                 "timer")

    def __init__(self, crowd: Crowd, click: Click, record: RequestRecord, retries: bool,
                 deadline: float, leave_at: float) -> None:
        self.crowd = crowd
        self.click = click
        self.record = record
        self.retries = retries
        self.deadline = deadline
        self.leave_at = leave_at
        """When an impatient user leaves (the deadline for a patient one)."""
        self.parked = False
        self.timer: simpy.Timeout | None = None
        """The timeout of the current park: an earlier park's, firing later, is stale."""

    @property
    def user(self) -> str:
        return self.record.user

    def park(self) -> None:
        """Wait for news, or for ``leave_at``: one timeout, no process. The first park
        is the page's first ask of the room, at once on the answer (later asks are
        charged with the other parked pages', :mod:`couponsim.sim.room_pages`)."""
        crowd = self.crowd
        if self.timer is None:
            crowd.world.room_asked()
        self.parked = True
        self.timer = crowd.env.timeout(max(0.0, self.leave_at - crowd.env.now))
        self.timer.callbacks.append(self._ran_out)
        crowd.world.room_news.wait(self)

    def told(self, reading: simpy.Process | None) -> None:
        """The room has news: ``reading`` will tell this user's outcome (None: read
        your own)."""
        self.parked = False
        if reading is None:
            self.crowd.env.process(self.crowd._await_final(self, Woke.ALONE))
        else:
            reading.callbacks.append(lambda done: self.crowd.told(self, done.value))

    def _ran_out(self, timer: simpy.Event) -> None:
        if self.parked and timer is self.timer:   # not told meanwhile, nor parked anew
            self.parked = False
            self.crowd.world.room_news.stop_waiting(self)
            self.crowd.env.process(self.crowd._await_final(self, Woke.RAN_OUT))
