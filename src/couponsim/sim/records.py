"""What a run of the model records: one row per request, per checkout action and per
sample, and what a failover cost. Plain data, read by the tables and the checks."""

from dataclasses import dataclass, field

from couponsim.flows.gateway import Gateway
from couponsim.sim.scenario import Scenario
from couponsim.sim.traffic import Kind

START_MS = 1_764_338_400_000
"""14:00:00 of the sale, in epoch milliseconds: the simulation clock is absolute."""
FORGOTTEN = "FORGOTTEN"
"""The final state of a request answered ISSUED that the store (a promoted replica)
no longer knows."""


@dataclass(slots=True)   # slots: a crowd of 500,000 makes about as many records
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
    instance_wait_ms: float = 0.0
    """Time in the service instances' queue before the request ran (``service.instances``)."""


@dataclass(slots=True)
class CheckoutRecord:
    user: str
    order: str
    code: str
    action: str
    """apply or release."""
    started_ms: float
    outcome: str = ""
    done_ms: float | None = None


@dataclass(slots=True)
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
    stored_ms: dict[str, float] = field(default_factory=dict)
    """When each stored coupon's transaction ended (virtual ms), by request id."""
