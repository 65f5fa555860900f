"""Prometheus metrics of one service instance, in a registry of its own (so that
several apps in one process, as in tests, do not collide)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from couponsim.drivers.aio import AsyncDriver
from couponsim.flows.gateway import Gateway
from couponsim.flows.lifecycle import event_ids
from couponsim.flows.observe import backlog
from couponsim.resilience.breaker import BreakerState

_BREAKER_STATES = list(BreakerState)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.answers = Counter("couponsim_issue_answers", "Issue answers, by answer",
                               ["answer"], registry=self.registry)
        self.latency = Histogram("couponsim_request_seconds", "Time to answer, by route",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.streams = Gauge("couponsim_status_streams", "Status streams open",
                             registry=self.registry)
        self.breaker = Gauge("couponsim_breaker_state", "1 for the gateway breaker's state",
                             ["state"], registry=self.registry)
        self.waiting = Gauge("couponsim_waiting_room_users", "Users in the waiting room",
                             ["coupon"], registry=self.registry)
        self.lag = Gauge("couponsim_issue_queue_lag", "Issue queue entries not yet stored "
                         "(undelivered + pending)", ["coupon"], registry=self.registry)
        self._answered: dict[str, Counter] = {}

    def answered(self, answer: str) -> None:
        """Count one issue answer. Each answer's child is looked up once: ``labels()``
        validates and locks on every call, a cost every press paid."""
        child = self._answered.get(answer)
        if child is None:
            child = self._answered[answer] = self.answers.labels(answer)
        child.inc()

    async def render(self, driver: AsyncDriver, gateway: Gateway) -> bytes:
        """The exposition text, with the gauges read from Redis and the gateway now."""
        for state in _BREAKER_STATES:
            self.breaker.labels(state.value).set(1 if gateway.breaker.state is state else 0)
        for coupon_id in await driver.run(event_ids()):
            seen = await driver.run(backlog(coupon_id))
            self.waiting.labels(coupon_id).set(seen.waiting)
            self.lag.labels(coupon_id).set(seen.undelivered + seen.pending)
        return generate_latest(self.registry)
