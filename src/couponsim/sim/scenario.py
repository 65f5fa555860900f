"""Scenario files (TOML, in data/scenarios/): what to simulate, checked before a run.

Every value is validated with an error that names the file's field, and any
field can be overridden (``traffic.users=5000``) from the command line.
"""

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from couponsim.bundled import bundled_dir
from couponsim.errors import InvalidChoice, InvalidInput
from couponsim.flows import Variant
from couponsim.flows.seed_options import SeedOptions
from couponsim.ids import validate_id
from couponsim.latency_profile import load_profile


@dataclass(frozen=True)
class EventSpec:
    coupon_id: str = "sim"
    stock: int = 1000
    discount_value: int = 10_000
    warm_up_at_s: float = -600.0
    """When the warm-up runs, in seconds from the start (the start is 0)."""


@dataclass(frozen=True)
class TrafficSpec:
    users: int = 50_000
    spread_s: float = 2.0
    """Arrivals after the start are exponential with this mean."""
    early_share: float = 0.0
    """Users who press the button up to 5 s before the start."""
    double_click_share: float = 0.05
    double_click_within_ms: float = 400.0
    status_poll_ms: float = 500.0
    status_timeout_s: float = 300.0
    """How long a user waits for a final status before giving up (the design's 5 min)."""
    ramp_share: float = 0.0
    """Users who come on a ramp over ``ramp_s`` after the start (their arrival rate
    rising steadily from nothing) rather than in the spike."""
    ramp_s: float = 60.0
    retry_share: float = 0.0
    """Users who press again, once, when no answer came within ``client_timeout_ms``
    or the answer was FAILED or GAVE_UP."""
    client_timeout_ms: float = 3_000.0
    abandon_share: float = 0.0
    """Users who leave the waiting room when their patience (exponential, mean
    ``patience_s``) runs out."""
    patience_s: float = 30.0
    room_poll_ms: float = 0.0
    """How often a waiting user's page asks the room for news (the service's page: 1,000
    ms after each answer, asking first at once). 0: the news reaches them the moment
    the room decides it, as a room that pushed it would."""
    bots: int = 0
    """Scripts that hammer: each sends ``bot_requests`` requests, one every
    ``bot_interval_ms`` from a second before the start, without waiting for answers."""
    bot_requests: int = 20
    bot_interval_ms: float = 100.0


@dataclass(frozen=True)
class LatencySpec:
    network_ms: float = 0.5
    """One way, exponential."""
    redis_command_ms: float = 0.02
    redis_script_ms: float = 0.06
    database_batch_ms: float = 4.0
    database_row_ms: float = 0.05
    consumer_batch_cpu_ms: float = 0.0
    """The consumer's own time per batch between its calls (the flow's Python, the
    client's encoding): what a live worker spends beyond Redis and the transaction
    (#18: a saturated consumer stored 311 coupons a second live, 488 in a model
    charging its calls only). 0: not charged."""
    consumer_row_cpu_ms: float = 0.0
    """The same, per entry of the batch (parsing it, building its row)."""
    profile: str = ""
    """The latency profile (data/profiles/NAME.toml, or a file) the other fields were
    taken from, where the scenario did not set them itself; empty: none."""


@dataclass(frozen=True)
class ConsumerSpec:
    count: int = 2
    batch_size: int = 100
    poll_ms: float = 50.0


@dataclass(frozen=True)
class CheckoutSpec:
    """Story 3 after the sale: winners apply their coupon to an order."""

    share: float = 0.0
    """Winners who check out, an exponential time (mean ``delay_s``) after their coupon
    is stored."""
    delay_s: float = 60.0
    double_submit_share: float = 0.0
    """Checkouts sent twice at once, as two orders: the coupon must be used once."""
    cancel_share: float = 0.0
    """Orders cancelled after an exponential time (mean ``cancel_after_s``): the coupon
    comes back."""
    cancel_after_s: float = 30.0
    amount: int = 50_000
    """The order's amount before the discount, in minor units (KRW)."""


@dataclass(frozen=True)
class GatewaySpec:
    enabled: bool = False
    rate_limit_per_s: int = 5_000
    rate_limit_timeout_ms: float = 0.0
    time_limit_ms: float = 1_000.0
    breaker_window: int = 100
    breaker_minimum_calls: int = 100
    breaker_failure_rate: float = 50.0
    breaker_wait_s: float = 5.0
    breaker_half_open_calls: int = 10
    admission_batch: int = 100
    admission_interval_s: float = 1.0


@dataclass(frozen=True)
class ServiceSpec:
    """The service's instances between the crowd and the gateway. A process runs one
    request's CPU at a time (one event loop); its Redis calls wait without it. The
    instances share one queue, as behind a balancer that always finds the free one."""

    instances: int = 0
    """How many; 0: not modelled (a request reaches the gateway the moment it arrives)."""
    cpu_ms: float = 0.25
    """CPU of one request in an instance: the issue route took 0.22-0.24 ms with uvloop
    and httptools here (benchmarks/service_rate.py, #19); ``calibrate`` does not measure
    it yet."""
    room_poll_cpu_ms: float = 0.0
    """CPU of one ask of a waiting user's page (every ``traffic.room_poll_ms``) in an
    instance; 0: the asks are not charged (the twin check measures it: about 1 ms)."""
    client_rtt_ms: float = 0.0
    """A press's round trip between the user's client and an instance, outside the
    instance's CPU (half on the way in, half back): on a loopback, the HTTP client's own
    work. Charged where the instances are modelled."""


LAG_DISTRIBUTIONS = ("fixed", "exponential")


@dataclass(frozen=True)
class HostSpec:
    """The machine the service's processes share. Each process runs one burst of CPU at a
    time (its own server: an instance, a consumer); on a host, each burst also needs one
    of its cores, first come first served, so that processes sharing too few cores wait
    for each other as they do live."""

    cores: int = 0
    """0: not modelled (each process has a core of its own)."""
    background_cores: float = 0.0
    """Cores kept busy by processes outside the model (the twin check's load generator,
    Redis's own CPU): taken in bursts every millisecond."""


@dataclass(frozen=True)
class FailoverSpec:
    """Redis's primary dies mid-sale and its replica, behind by the replication lag,
    takes over: what an asynchronous replica forgets, the sale may sell again."""

    at_s: float = -1.0
    """When the primary dies, in seconds from the start; negative: it never does."""
    replication_lag_ms: float = 0.0
    """How far the replica is behind at that moment: writes of the primary's last
    ``replication_lag_ms`` are lost (the mean, for an exponential lag)."""
    lag_distribution: str = "fixed"
    """``fixed`` or ``exponential`` (one draw per run, from the run's seed)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    seed: int = 1
    variant: Variant = Variant.HARDENED
    sold_out_flag: bool = True
    """The service answers SOLD_OUT itself once it has seen the coupon sold out, as a
    real one does (kept fresh by pub/sub), instead of asking Redis again."""
    event: EventSpec = field(default_factory=EventSpec)
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    latency: LatencySpec = field(default_factory=LatencySpec)
    consumers: ConsumerSpec = field(default_factory=ConsumerSpec)
    gateway: GatewaySpec = field(default_factory=GatewaySpec)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    checkout: CheckoutSpec = field(default_factory=CheckoutSpec)
    host: HostSpec = field(default_factory=HostSpec)
    failover: FailoverSpec = field(default_factory=FailoverSpec)
    seed_options: SeedOptions = field(default_factory=SeedOptions)
    """The seed variant's readings of the document where it contradicts itself or
    shows nothing (``cache_field``, ``unique_key``); the hardened variant ignores
    them. Not ``[seed]``: ``seed`` is the run's random seed."""

    def __post_init__(self) -> None:
        _check(self)


_POSITIVE = {"stock", "users", "count", "batch_size", "status_poll_ms", "poll_ms",
             "status_timeout_s", "ramp_s", "client_timeout_ms", "patience_s", "bot_requests",
             "bot_interval_ms", "delay_s", "cancel_after_s",
             "rate_limit_per_s", "time_limit_ms", "breaker_window", "breaker_minimum_calls",
             "breaker_half_open_calls", "admission_batch", "admission_interval_s", "cpu_ms"}
_SHARES = {"early_share", "double_click_share", "ramp_share", "retry_share", "abandon_share",
           "share", "double_submit_share", "cancel_share"}


def _check(scenario: Scenario) -> None:
    validate_id("coupon", scenario.event.coupon_id)
    if isinstance(scenario.seed, bool) or not isinstance(scenario.seed, int) or scenario.seed < 0:
        raise InvalidInput(f"seed must be a whole number >= 0, got {scenario.seed!r}")
    if not isinstance(scenario.sold_out_flag, bool):
        raise InvalidInput(f"sold_out_flag must be true or false, got {scenario.sold_out_flag!r}")
    try:
        object.__setattr__(scenario, "variant", Variant(scenario.variant))
    except ValueError:
        raise InvalidChoice("variant", scenario.variant, tuple(Variant)) from None
    for section in _SECTIONS:
        spec = getattr(scenario, section)
        for item in fields(spec):
            value = getattr(spec, item.name)
            where = f"{section}.{item.name}"
            if item.type is bool:
                if not isinstance(value, bool):
                    raise InvalidInput(f"{where} must be true or false, got {value!r}")
                continue
            if item.type is str:
                continue
            if get_origin(item.type) is Literal:   # a choice: not a number to range-check
                if value not in get_args(item.type):
                    raise InvalidChoice(where, value, get_args(item.type))
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise InvalidInput(f"{where} must be a finite number, got {value!r}")
            if item.type is int and not isinstance(value, int):
                raise InvalidInput(f"{where} must be a whole number, got {value!r}")
            if item.name in _POSITIVE and value <= 0:
                raise InvalidInput(f"{where} must be above 0, got {value!r}")
            if item.name in _SHARES and not 0 <= value <= 1:
                raise InvalidInput(f"{where} is a share from 0 to 1, got {value!r}")
            if item.name not in ("warm_up_at_s", "at_s") and value < 0:
                raise InvalidInput(f"{where} must not be negative, got {value!r}")
    if scenario.host.background_cores and not scenario.host.background_cores < scenario.host.cores:
        raise InvalidInput("host.background_cores needs a host (host.cores) and must leave a "
                           "part of its cores free")
    if not 0 < scenario.gateway.breaker_failure_rate <= 100:
        raise InvalidInput("gateway.breaker_failure_rate is a percentage above 0, at most 100")
    if scenario.event.warm_up_at_s > -1:
        raise InvalidInput("event.warm_up_at_s must come at least 1 s before the start")
    if scenario.failover.lag_distribution not in LAG_DISTRIBUTIONS:
        raise InvalidChoice("failover.lag_distribution", scenario.failover.lag_distribution,
                            LAG_DISTRIBUTIONS)


def scenario_names() -> list[str]:
    return sorted(path.stem for path in bundled_dir("scenarios").glob("*.toml"))


def load_scenario(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """A bundled scenario by name, or a TOML file by path, with ``section.field=value``
    overrides applied; every value checked.

    ``latency.profile`` fills the latency fields nobody else gives: in the file, under
    the file's own fields; from an override, under the other overrides only."""
    path = Path(name_or_path)
    if not path.suffix:
        path = bundled_dir("scenarios") / f"{name_or_path}.toml"
        if not path.is_file():
            raise InvalidInput(f"no scenario {name_or_path!r}; bundled: "
                               + ", ".join(scenario_names()))
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read scenario {path}: {exc}") from None
    if any(override.partition("=")[0].strip() == "latency.profile" for override in overrides):
        # A profile named on the command line stands over the file's latency fields, as
        # any --set does; the other --set fields still stand over the profile.
        document["latency"] = {}
    for override in overrides:
        key, _, raw = override.partition("=")
        if not raw:
            raise InvalidInput(f"override {override!r}: write section.field=value")
        *sections, name = key.strip().split(".")
        if sections[:1] == ["seed"]:
            raise InvalidInput(f"override {override!r}: seed is the run's random seed; the "
                               "seed variant's readings are seed_options.FIELD")
        target = document
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise InvalidInput(f"override {override!r}: {section} is not a table")
        target[name] = _parse_value(raw.strip())
    return _build(document)


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


_SECTIONS: dict[str, type] = {"event": EventSpec, "traffic": TrafficSpec,
                              "latency": LatencySpec, "consumers": ConsumerSpec,
                              "gateway": GatewaySpec, "service": ServiceSpec,
                              "checkout": CheckoutSpec, "host": HostSpec,
                              "failover": FailoverSpec, "seed_options": SeedOptions}


def _build(document: dict[str, Any]) -> Scenario:
    arguments: dict[str, Any] = {}
    for name, value in document.items():
        kind = _SECTIONS.get(name)
        if kind is None:
            arguments[name] = value
        elif not isinstance(value, dict):
            raise InvalidInput(f"{name} must be a table of fields")
        elif name == "latency" and "profile" in value:
            # the profile's measured costs, under the fields the scenario (or --set) gives
            arguments[name] = _make(kind, load_profile(value["profile"]) | value, "latency.")
        else:
            arguments[name] = _make(kind, value, f"{name}.")
    return _make(Scenario, arguments, "")  # type: ignore[no-any-return]


def _make(kind: type, values: dict[str, Any], where: str) -> Any:
    known = {item.name for item in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(where + u for u in unknown)} "
                           f"(known: {', '.join(sorted(known))})")
    try:
        return kind(**values)
    except InvalidChoice as exc:
        # a section that checks its own choices names the field, not where it sits
        raise InvalidChoice(where + exc.field, exc.value, exc.allowed) from None
    except InvalidInput:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"scenario {where.rstrip('.') or 'file'}: {exc}") from None
