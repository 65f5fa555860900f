"""The SimPy model of one flash sale, run through the real flows and scripts.

Redis is one server: every round trip crosses the network (exponential, one way),
waits its turn, runs (on fakeredis or a real Redis, at that moment of virtual
time) and costs its service time. The database is a small pool whose
transactions cost a time per batch and per row. Users arrive from the traffic
model, some click twice, each asks the service (and, when engaged, the gateway),
then polls the status of an accepted request until it is final. Consumers drain
the queue; the scheduler warms up and activates the event; the admission job
works off the waiting room. Each purpose draws from its own random stream of one
seed (numpy SeedSequence), so a run replays bit for bit.

A failover (``[failover]``) kills the primary mid-sale: the replica, promoted, holds
the primary's store as it was the replication lag earlier (see ``_failover``).
"""

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import numpy as np
import redis
import simpy

from couponsim.drivers.simulated import flow_process
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Command, DbCall, Effect, Pipeline, Script
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows import Flow, Variant, lifecycle
from couponsim.flows.consume import (
    SEED_BATCH_SIZE,
    ConsumerConfig,
    consume_batch,
    consume_seed_batch,
    load_event,
)
from couponsim.flows.gateway import Gateway, admission_round, gateway_issue
from couponsim.flows.issue import ISSUE_FLOWS, IssueOutcome, IssueRequest
from couponsim.flows.redeem import apply_coupon, apply_coupon_seed, release_coupon
from couponsim.flows.status import read_seed_status, read_status
from couponsim.flows.waiting_room import FINAL_STATES, leave_room, room_outcome
from couponsim.keys import SEED_ISSUE_QUEUE, CouponKeys, seed_status_key
from couponsim.pricing import ApplyRequest
from couponsim.resilience.breaker import BreakerConfig, CircuitBreaker
from couponsim.resilience.rate_limiter import RateLimiter, RateLimiterConfig
from couponsim.resilience.time_limiter import TimeLimiter
from couponsim.sim.components import RedisServer, Server
from couponsim.sim.scenario import Scenario
from couponsim.sim.traffic import Click, Kind, plan

START_MS = 1_764_338_400_000
"""14:00:00 of the sale, in epoch milliseconds: the simulation clock is absolute."""
DATABASE_POOL = 5
SAMPLE_MS = 100.0
MAX_EARLY_RETRIES = 10
FORGOTTEN = "FORGOTTEN"
"""The final state of a request answered ISSUED that the store (a promoted replica)
no longer knows."""
STREAMS = ("arrivals", "clicks", "network", "shuffle", "behaviour", "checkout", "failover")
"""One random stream per purpose; new purposes go at the end, so the streams of the
old ones (and the runs they gave) stay as they were."""


@dataclass
class RequestRecord:
    user: str
    request: str
    arrival_ms: float
    redis_commands: int = 0
    path: str = ""
    answer: str = ""
    answered_ms: float | None = None
    final_state: str = ""
    final_ms: float | None = None
    status_of: str = ""
    """The request whose status tells this one's outcome: its own, or (after the room
    served the user) the request the room issued with."""
    kind: str = Kind.FIRST.value
    room_position: int = 0
    """The place the waiting room gave on joining (0: did not wait)."""
    code: str = ""
    """The coupon code, once stored."""


@dataclass
class CheckoutRecord:
    user: str
    order: str
    code: str
    action: str
    """apply or release."""
    started_ms: float
    outcome: str = ""
    done_ms: float | None = None


@dataclass
class Sample:
    at_ms: float
    stock_left: int
    backlog: int
    """Queue entries not yet finalized by a consumer (seed: items not yet popped)."""
    room: int
    breaker: str


@dataclass(frozen=True)
class Failover:
    """What the primary's death cost, as the model saw it happen."""

    at_ms: float
    lag_ms: float
    """The lag the replica had: the primary's writes of this last stretch were lost."""
    acknowledged: int
    """Requests answered ISSUED before the death."""
    forgotten: tuple[str, ...]
    """Of those, the requests whose record the promoted store does not have."""


@dataclass
class Run:
    scenario: Scenario
    requests: list[RequestRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    checkouts: list[CheckoutRecord] = field(default_factory=list)
    admissions: list[tuple[float, int]] = field(default_factory=list)
    """Per admission round that ran: when (ms) and how many users the room served."""
    gateway: Gateway | None = None
    end_ms: float = 0.0
    failover: Failover | None = None


class Model:
    def __init__(self, scenario: Scenario, driver: SyncDriver,
                 progress: Callable[[int], None] | None = None) -> None:
        if scenario.failover.at_s >= 0 and not isinstance(driver.client, fakeredis.FakeRedis):
            raise InvalidInput(
                "failover.at_s: the simulated failover promotes an embedded replica "
                "(fakeredis) and cannot fork a real Redis; run it on fake://NAME, or "
                "kill a real master with couponsim.failover")
        self.scenario = scenario
        self.driver = driver
        """The store Redis effects run on: after a failover, the promoted replica."""
        self.progress = progress or (lambda _n: None)
        """Called with 1 each time a user (not a second click) has their final answer."""
        streams = np.random.SeedSequence(scenario.seed).spawn(len(STREAMS))
        self.rng = {name: np.random.default_rng(s) for name, s in zip(STREAMS, streams,
                                                                        strict=True)}
        warm_up_ms = START_MS + scenario.event.warm_up_at_s * 1000
        self.env = simpy.Environment(initial_time=warm_up_ms - 1)
        latency = scenario.latency
        self.redis = RedisServer(self.env, lambda effect: self.driver.execute(effect),
                                 lambda effect: _service_ms(
                                     effect, latency.redis_command_ms, latency.redis_script_ms))
        self.database = Server(self.env, capacity=DATABASE_POOL)
        self.keys = CouponKeys(scenario.event.coupon_id)
        self.run = Run(scenario, gateway=self._gateway())
        self.sold_out_seen = False
        self.room_news: dict[str, simpy.Event] = {}
        """Per waiting user, the push that tells them the room has news for them."""
        self.traffic_done = self.env.event()
        self.activated = self.env.event()
        self.reclaiming: set[str] = set()
        """Consumers to reclaim every pending entry at once: after a failover, the
        promoted store has entries pending that the dead primary had acknowledged."""
        self.clicks_live = 0

    def simulate(self) -> Run:
        event = CouponEvent(self.scenario.event.coupon_id, stock=self.scenario.event.stock,
                            name=self.scenario.name,
                            discount_value=self.scenario.event.discount_value,
                            starts_at_ms=START_MS)
        self.env.process(self._scheduler(event))   # warm-up at least 1 s before the start
        self._traffic()
        self.consumers_done = self.env.all_of([
            self.env.process(self._consumer(f"consumer-{n}"))
            for n in range(self.scenario.consumers.count)])
        if self.run.gateway is not None:
            self.env.process(self._admissions())
        self.env.process(self._sampler())
        if self.scenario.failover.at_s >= 0:
            self.env.process(self._failover())
        self.env.run()
        self.run.end_ms = self.env.now
        return self.run

    # -- the system ---------------------------------------------------------------

    def _gateway(self) -> Gateway | None:
        spec = self.scenario.gateway
        if not spec.enabled:
            return None
        return Gateway(
            breaker=CircuitBreaker(BreakerConfig(
                window_size=spec.breaker_window, minimum_calls=spec.breaker_minimum_calls,
                failure_rate_threshold=spec.breaker_failure_rate,
                wait_in_open_s=spec.breaker_wait_s,
                permitted_in_half_open=spec.breaker_half_open_calls)),
            limiter=RateLimiter(RateLimiterConfig(
                limit_for_period=spec.rate_limit_per_s, refresh_period_s=1.0,
                timeout_s=spec.rate_limit_timeout_ms / 1000), created_at=START_MS / 1000),
            time_limiter=TimeLimiter(spec.time_limit_ms / 1000),
            variant=self.scenario.variant)

    def _perform(self, record: RequestRecord | None) -> Callable[
            [Effect], Generator[simpy.Event, Any, Any]]:
        latency = self.scenario.latency
        network = self.rng["network"]

        def perform(effect: Effect) -> Generator[simpy.Event, Any, Any]:
            if isinstance(effect, DbCall):
                with self.database.request() as turn:
                    yield turn
                    result = self.driver.execute(effect)
                    rows = len(effect.args[0]) if effect.args and isinstance(
                        effect.args[0], list | tuple) else 1
                    yield self.env.timeout(latency.database_batch_ms
                                           + rows * latency.database_row_ms)
                return result
            if record is not None:
                record.redis_commands += (len(effect.commands)
                                          if isinstance(effect, Pipeline) else 1)
            yield self.env.timeout(network.exponential(latency.network_ms))
            result = yield from self.redis.serve(effect)
            yield self.env.timeout(network.exponential(latency.network_ms))
            return result

        return perform

    def _flow(self, flow: Flow[Any], record: RequestRecord | None = None) -> simpy.Process:
        return self.env.process(flow_process(self.env, flow, self._perform(record)))

    def _scheduler(self, event: CouponEvent) -> Generator[simpy.Event, Any, None]:
        warm_up = (lifecycle.warm_up_seed(event) if self.scenario.variant is Variant.SEED
                   else lifecycle.warm_up(event))
        yield self._flow(warm_up)
        yield self.env.timeout(START_MS - self.env.now)
        yield self._flow(lifecycle.activate_seed(event.coupon_id)
                         if self.scenario.variant is Variant.SEED
                         else lifecycle.activate(event.coupon_id))
        self.activated.succeed()

    def _traffic(self) -> None:
        for click in plan(self.scenario.traffic, self.rng["arrivals"], self.rng["clicks"]):
            self._press(click)

    def _press(self, click: Click) -> None:
        """Start a click; the last one to have its final answer ends the issuing traffic
        (consumers and admissions stop after that; checkouts go on)."""
        self.clicks_live += 1

        def click_then_count() -> Generator[simpy.Event, Any, None]:
            yield from self._click(click)
            self.clicks_live -= 1
            if not self.clicks_live:
                self.traffic_done.succeed()

        self.env.process(click_then_count())

    def _click(self, click: Click) -> Generator[simpy.Event, Any, None]:
        """One click, and what its user does about the answer.

        A user told the sale has not started presses again a moment later (a new
        request), as people do. A bot does not wait for anything.
        """
        traffic = self.scenario.traffic
        behaviour = self.rng["behaviour"]
        retries = click.kind is Kind.FIRST and behaviour.random() < traffic.retry_share
        patience_ms = (float(behaviour.exponential(traffic.patience_s * 1000))
                       if click.kind is Kind.FIRST and behaviour.random() < traffic.abandon_share
                       else None)
        yield self.env.timeout(max(0.0, START_MS + click.at_ms - self.env.now))
        request_id, kind = click.request, click.kind
        for attempt in range(MAX_EARLY_RETRIES + 1):
            asked = self.env.process(self._ask(click.user, request_id, kind))
            if retries:
                yield asked | self.env.timeout(traffic.client_timeout_ms)
                if not asked.triggered:      # no answer yet: press again, once
                    retries = False
                    self._press(Click(self.env.now - START_MS, click.user,
                                      f"{click.request}-retry", Kind.RETRY))
            record: RequestRecord = yield asked
            if record.answer != IssueOutcome.NOT_ACTIVE.value or kind is Kind.BOT:
                break
            record.final_state, record.final_ms = record.answer, record.answered_ms
            yield self.env.timeout(float(self.rng["clicks"].uniform(500, 1_500)))
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
            self.env.process(self._checkout(record))

    def _ask(self, user: str, request_id: str,
             kind: Kind) -> Generator[simpy.Event, Any, RequestRecord]:
        record = RequestRecord(user, request_id, self.env.now, kind=kind.value)
        self.run.requests.append(record)
        request = IssueRequest(self.scenario.event.coupon_id, user, request_id)
        if self.scenario.sold_out_flag and self.sold_out_seen:
            record.path, record.answer = "sold-out flag", IssueOutcome.SOLD_OUT.value
        elif self.run.gateway is not None:
            shuffle = int(self.rng["shuffle"].integers(0, 1_000_000))
            answer = yield self._flow(gateway_issue(self.run.gateway, request, shuffle), record)
            record.path, record.room_position = answer.path.value, answer.position
            record.answer = answer.outcome.value if answer.outcome else answer.room_state
        else:
            result = yield self._flow(
                ISSUE_FLOWS[self.scenario.variant](request, int(self.env.now)), record)
            record.path, record.answer = "direct", result.outcome.value
        record.answered_ms = self.env.now
        if record.answer == IssueOutcome.SOLD_OUT.value:
            self.sold_out_seen = True
        return record

    def _await_final(self, record: RequestRecord,
                     patience_ms: float | None) -> Generator[simpy.Event, Any, None]:
        """Wait until the user knows: a stored coupon, or a final refusal; a user whose
        status never comes gives up after ``status_timeout_s`` (GAVE_UP), and an
        impatient one leaves the waiting room (LEFT). A request answered ISSUED whose
        status the store no longer knows (only after a failover: the answer and the
        record are written together) is FORGOTTEN, as the service's "no such
        request" tells its user at once.

        An accepted request's status is polled. A user in the waiting room is pushed
        the news instead (the room publishes every outcome), then reads their state
        once: a room of 100,000 polling every second would be a load no real room
        carries.
        """
        coupon = self.scenario.event.coupon_id
        deadline = self.env.now + self.scenario.traffic.status_timeout_s * 1000
        leave_at = deadline if patience_ms is None else min(deadline,
                                                           self.env.now + patience_ms)
        while self.env.now < deadline:
            if record.answer == "ISSUED":
                status_of = record.status_of or record.request
                status = yield self._flow(
                    read_seed_status(status_of) if self.scenario.variant is Variant.SEED
                    else read_status(coupon, status_of), record)
                if status is None:
                    record.final_state, record.final_ms = FORGOTTEN, self.env.now
                    return
                if status.final:
                    record.final_state, record.final_ms = status.state.value, self.env.now
                    record.code = status.code
                    return
            elif record.answer in ("WAITING", "ADMITTED"):
                news = self.room_news.setdefault(record.user, self.env.event())
                yield news | self.env.timeout(max(0.0, leave_at - self.env.now))
                impatient = leave_at < deadline and self.env.now >= leave_at
                if impatient and not news.triggered:
                    left = yield self._flow(leave_room(coupon, record.user), record)
                    if left and not news.triggered:
                        news.succeed()           # the user's other clicks leave with them
                    leave_at = deadline          # else admitted meanwhile: news is coming
                state, request_id = yield self._flow(room_outcome(coupon, record.user),
                                                     record)
                if state == "LEFT":
                    record.final_state, record.final_ms = "LEFT", self.env.now
                    return
                if state in FINAL_STATES:
                    record.answer, record.status_of = state, request_id or ""
                    if state != "ISSUED":        # told now, after the wait in the room
                        record.final_state, record.final_ms = state, self.env.now
                        return
                    continue
                if news.triggered and self.room_news.get(record.user) is news:
                    del self.room_news[record.user]     # not final yet: wait for the next
                continue
            else:
                record.final_state, record.final_ms = record.answer, record.answered_ms
                return
            yield self.env.timeout(self.scenario.traffic.status_poll_ms)
        record.final_state, record.final_ms = "GAVE_UP", self.env.now

    def _checkout(self, record: RequestRecord) -> Generator[simpy.Event, Any, None]:
        """Story 3: a winner applies the coupon to an order, perhaps twice at once, and
        perhaps cancels the order later, which gives the coupon back."""
        spec = self.scenario.checkout
        rng = self.rng["checkout"]
        if rng.random() >= spec.share:
            return
        yield self.env.timeout(float(rng.exponential(spec.delay_s * 1000)))
        orders = [f"o-{record.user}"]
        if rng.random() < spec.double_submit_share:
            orders.append(f"o-{record.user}-2")
        cancels = rng.random() < spec.cancel_share
        applies = [self.env.process(self._apply(record, order)) for order in orders]
        results = yield self.env.all_of(applies)
        applied = [apply for apply in applies if results[apply].applied]
        if cancels and applied:
            yield self.env.timeout(float(rng.exponential(spec.cancel_after_s * 1000)))
            order = results[applied[0]].order_id
            checkout = CheckoutRecord(record.user, order, record.code, "release",
                                      self.env.now)
            self.run.checkouts.append(checkout)
            released = yield self._flow(release_coupon(record.user, order, record.code,
                                                       int(self.env.now)))
            checkout.outcome = "RELEASED" if released.released else "NOT_HELD"
            checkout.done_ms = self.env.now

    def _apply(self, record: RequestRecord, order: str) -> Generator[simpy.Event, Any, Any]:
        checkout = CheckoutRecord(record.user, order, record.code, "apply", self.env.now)
        self.run.checkouts.append(checkout)
        request = ApplyRequest(record.user, order, record.code, self.scenario.checkout.amount)
        flow = (apply_coupon_seed(request, int(self.env.now))
                if self.scenario.variant is Variant.SEED
                else apply_coupon(request, int(self.env.now)))
        result = yield self._flow(flow)
        checkout.outcome, checkout.done_ms = result.outcome.value, self.env.now
        return result

    def _consumer(self, name: str) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(START_MS - self.env.now)
        spec = self.scenario.consumers
        events: dict[str, CouponEvent] = {}
        event = None if self.scenario.variant is Variant.SEED else (
            yield self._flow(load_event(self.scenario.event.coupon_id)))
        config = ConsumerConfig(batch_size=spec.batch_size)
        # Pending entries are reclaimed after an idle time Redis measures in wall time,
        # which virtual time never reaches; a consumer whose store failed over reclaims
        # at once instead, as one restarted on the promoted replica would.
        reclaim = ConsumerConfig(batch_size=spec.batch_size, claim_idle_ms=0)
        while True:
            reclaiming = name in self.reclaiming
            flow = (consume_seed_batch(events, int(self.env.now), SEED_BATCH_SIZE)
                    if event is None else consume_batch(event, name, int(self.env.now),
                                                        reclaim if reclaiming else config))
            report = yield self._flow(flow)
            if reclaiming and not report.reclaimed:
                self.reclaiming.discard(name)
            if event is None and report.read:
                yield self.env.timeout(spec.poll_ms)   # the seed's fixedDelay: after every run
            if report.read == 0:
                if self.traffic_done.triggered:
                    return
                yield self.env.timeout(spec.poll_ms)

    def _admissions(self) -> Generator[simpy.Event, Any, None]:
        assert self.run.gateway is not None
        spec = self.scenario.gateway
        yield self.env.timeout(START_MS - self.env.now)
        while not self.traffic_done.triggered:
            yield self.env.timeout(spec.admission_interval_s * 1000)
            admission = yield self._flow(admission_round(
                self.run.gateway, self.scenario.event.coupon_id, spec.admission_batch))
            if admission is None:
                continue
            self.run.admissions.append((self.env.now, sum(
                outcome != "REQUEUE" for outcome in admission.outcomes.values())))
            told = self.room_news if admission.drained else {
                user: news for user, news in self.room_news.items() if user in admission.outcomes}
            for news in list(told.values()):
                if not news.triggered:
                    news.succeed()

    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        """Observe the store from outside the model (no queueing, no latency)."""
        yield self.env.timeout(START_MS - 1_000 - self.env.now)
        while True:
            client = self.driver.client          # the promoted store after a failover
            if self.scenario.variant is Variant.SEED:
                backlog = client.llen(SEED_ISSUE_QUEUE)
            else:
                group = client.xinfo_groups(self.keys.queue)[0]
                backlog = int(group.get("lag") or 0) + int(group["pending"])
            breaker = self.run.gateway.breaker.state.value if self.run.gateway else ""
            self.run.samples.append(Sample(self.env.now, int(client.get(self.keys.stock) or 0),
                                           backlog, client.zcard(self.keys.waiting), breaker))
            # Done when the queue is drained, or when the consumers have stopped with
            # entries left that no one will read (a store that forgot its group's state
            # after a failover): the checker reports those; sampling on would never end.
            if self.traffic_done.triggered and (backlog == 0 or self.consumers_done.triggered):
                return
            yield self.env.timeout(SAMPLE_MS)

    def _failover(self) -> Generator[simpy.Event, Any, None]:
        """The primary dies at ``at_s``; its replica, ``lag`` behind, is promoted at once.

        Redis replicates a stream of writes in order, so at the death the replica
        holds exactly the primary's store as it was ``lag`` earlier: the model
        copies the store (DUMP of every key) at that moment and, at the death,
        restores the copy into a new store that every later effect runs on.
        Replaying each effect on a second store after its delay would be the
        literal picture, but not a faithful one: ``XADD *`` inside the scripts
        takes its ID from the store's own clock, so a replica replaying the
        scripts would mint other IDs and ignore the primary's XACKs (Redis 7
        replicates a script's effects, IDs included, precisely for this). A lag
        reaching back before the event opened is cut there: the sale's setup is
        taken as replicated long before. The switch itself is instant: what
        clients lose while a real failover is detected is not modelled, only
        what the store forgets.
        """
        spec = self.scenario.failover
        dies_ms = START_MS + spec.at_s * 1000
        lag_ms = (float(self.rng["failover"].exponential(spec.replication_lag_ms))
                  if spec.lag_distribution == "exponential" else spec.replication_lag_ms)
        yield self.activated
        yield self.env.timeout(max(0.0, dies_ms - lag_ms - self.env.now))
        replicated_ms = self.env.now
        primary = self.driver.client
        assert isinstance(primary, fakeredis.FakeRedis), "checked when the model was made"
        copy = _dump(primary)
        yield self.env.timeout(max(0.0, dies_ms - self.env.now))
        promoted = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        _restore(promoted, copy)
        self.driver = SyncDriver(promoted, "fake://promoted-replica", self.driver.repository)
        self.reclaiming = {f"consumer-{n}" for n in range(self.scenario.consumers.count)}
        acknowledged = [record.status_of or record.request for record in self.run.requests
                        if record.answer == IssueOutcome.ISSUED.value]
        records = [seed_status_key(request) if self.scenario.variant is Variant.SEED
                   else self.keys.request(request) for request in acknowledged]
        pipe = promoted.pipeline(transaction=False)
        for key in records:
            pipe.exists(key)
        kept = pipe.execute()
        self.run.failover = Failover(
            self.env.now, self.env.now - replicated_ms, len(acknowledged),
            tuple(request for request, exists in zip(acknowledged, kept, strict=True)
                  if not exists))


def _dump(client: redis.Redis) -> list[tuple[str, int, bytes]]:
    """Every key of the store with its time to live (ms, -1: none) and serialized value."""
    keys = list(client.scan_iter(count=1_000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
        pipe.dump(key)           # redis-py never decodes a DUMP reply
    replies = pipe.execute()
    return [(key, int(ttl), value) for key, ttl, value
            in zip(keys, replies[0::2], replies[1::2], strict=True) if value is not None]


def _restore(client: redis.Redis, copy: list[tuple[str, int, bytes]]) -> None:
    pipe = client.pipeline(transaction=False)
    for key, ttl, value in copy:
        pipe.restore(key, max(ttl, 0), value)
    pipe.execute()


def _service_ms(effect: Effect, command_ms: float, script_ms: float) -> float:
    match effect:
        case Script():
            return script_ms
        case Pipeline(commands):
            return command_ms * len(commands)
        case Command():
            return command_ms
    return 0.0
