"""The crowd: users arrive from the traffic model, some click twice, each asks the
service (and, when engaged, the gateway), then waits for the final answer of an
accepted request. Winners go on to check out (:class:`Checkouts`)."""

from collections.abc import Callable, Generator
from typing import Any

import simpy

from couponsim.flows import Variant
from couponsim.flows.gateway import gateway_issue
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest
from couponsim.flows.status import read_seed_status, read_status
from couponsim.flows.waiting_room import FINAL_STATES, leave_room, room_outcome
from couponsim.sim.checkouts import Checkouts
from couponsim.sim.records import FORGOTTEN, START_MS, RequestRecord
from couponsim.sim.traffic import Click, Kind, plan
from couponsim.sim.world import World

MAX_EARLY_RETRIES = 10


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
        """Start a click; the last one to have its final answer ends the issuing traffic
        (consumers and admissions stop after that; checkouts go on)."""
        self.clicks_live += 1

        def click_then_count() -> Generator[simpy.Event, Any, None]:
            yield from self._click(click)
            self.clicks_live -= 1
            if not self.clicks_live:
                self.world.traffic_done.succeed()

        self.env.process(click_then_count())

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
        if kind is Kind.BOT:
            record.final_state, record.final_ms = record.answer, record.answered_ms
            return
        yield from self._await_final(record, patience_ms)
        if retries and record.final_state in ("FAILED", "GAVE_UP", FORGOTTEN):
            self._press(Click(self.env.now - START_MS, click.user, f"{click.request}-retry",
                              Kind.RETRY))
        if click.kind is Kind.FIRST:
            self.progress(1)
        if record.final_state == "COMPLETED":
            self.checkouts.start(record)

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
        start = instances.take(cpu_ms)
        record.instance_wait_ms = start - arrived
        yield self.env.timeout(start + cpu_ms - arrived)
        return int(arrived)

    def _await_final(self, record: RequestRecord,
                     patience_ms: float | None) -> Generator[simpy.Event, Any, None]:
        """Wait until the user knows: a stored coupon, or a final refusal; a user whose
        status never comes gives up after ``status_timeout_s`` (GAVE_UP), and an
        impatient one leaves the waiting room (LEFT). A request answered ISSUED whose
        status the store no longer knows (only after a failover: the answer and the
        record are written together) is FORGOTTEN, as the service's "no such
        request" tells its user at once.

        An accepted request's status is polled. A user in the waiting room is pushed
        the news instead (the room publishes every outcome), and learns their state
        from one read with everyone told at the same moment (:class:`RoomNews`): a
        room of 100,000 polling every second would be a load no real room carries.
        """
        scenario, store = self.world.scenario, self.world.store
        coupon = scenario.event.coupon_id
        deadline = self.env.now + scenario.traffic.status_timeout_s * 1000
        leave_at = deadline if patience_ms is None else min(deadline,
                                                           self.env.now + patience_ms)
        while self.env.now < deadline:
            if record.answer == "ISSUED":
                status_of = record.status_of or record.request
                status = yield from store.flow(
                    read_seed_status(status_of) if scenario.variant is Variant.SEED
                    else read_status(coupon, status_of), record)
                if status is None:
                    record.final_state, record.final_ms = FORGOTTEN, self.env.now
                    return
                if status.final:
                    record.final_state, record.final_ms = status.state.value, self.env.now
                    record.code = status.code
                    return
            elif record.answer in ("WAITING", "ADMITTED"):
                news = self.world.room_news.of(record.user)
                yield news | self.env.timeout(max(0.0, leave_at - self.env.now))
                impatient = leave_at < deadline and self.env.now >= leave_at
                if impatient and not news.triggered:
                    left = yield from store.flow(leave_room(coupon, record.user), record)
                    if left and not news.triggered:
                        news.succeed()           # the user's other clicks leave with them
                    leave_at = deadline          # else admitted meanwhile: news is coming
                if news.triggered and news.value is not None:
                    outcomes = yield news.value          # the read of everyone told with them
                    state, request_id = outcomes[record.user]
                    record.redis_commands += 1           # their part of that call
                else:                                    # left: read their own
                    state, request_id = yield from store.flow(
                        room_outcome(coupon, record.user), record)
                if state == "LEFT":
                    record.final_state, record.final_ms = "LEFT", self.env.now
                    return
                if state in FINAL_STATES:
                    record.answer, record.status_of = state, request_id or ""
                    if state != "ISSUED":        # told now, after the wait in the room
                        record.final_state, record.final_ms = state, self.env.now
                        return
                    continue
                self.world.room_news.read(record.user, news)   # not final yet: wait on
                continue
            else:
                record.final_state, record.final_ms = record.answer, record.answered_ms
                return
            yield self.env.timeout(scenario.traffic.status_poll_ms)
        record.final_state, record.final_ms = "GAVE_UP", self.env.now
