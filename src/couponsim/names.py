"""What each number and label is called for people, with its unit: one registry.

The CLI summary, the run's figures, the sweeps' tables and plots and the notebooks
all say a quantity the same way, so a planner who reads "p99 wait from press to
coupon stored (s)" on a plot finds the same words in the summary and the sweep.
Code keeps its short keys (``p99_stored_s``, the summary's JSON keys, the path and
state values the model records); only what people read comes from here.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Name:
    label: str
    """What the quantity is, in a planner's words."""
    unit: str = ""
    """Its unit as printed after the label (``s``, ``ms``, ``users``), or none."""
    meaning: str = ""
    """What exactly is measured, when the label alone could be misread."""

    def __str__(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, Name] = {
    # one run's summary (summary.json keys) and a sweep's metrics share these names
    "sell_out_s": Name("sell-out time", "s after 14:00:00",
                       "the first 100 ms sample in which no stock is left"),
    "last_arrival_s": Name("last user's press", "s after 14:00:00"),
    "all_final_s": Name("last user's final answer", "s after 14:00:00",
                        "when the last person (bots aside) knew how they ended: a stored "
                        "coupon or a final refusal; refusals come at once, so with a long "
                        "tail of arrivals this is about the last press"),
    "last_stored_s": Name("last winner told the coupon is stored", "s after 14:00:00",
                          "when the last winner's status read COMPLETED"),
    "status_s": Name("wait from press to final status", "s",
                     "until the user knows: a stored coupon or a final refusal"),
    "p50_status_s": Name("median wait from press to final status", "s"),
    "p99_status_s": Name("p99 wait from press to final status", "s"),
    "p99_stored_s": Name("p99 wait from press to coupon stored", "s",
                         "over the requests whose coupon was stored (COMPLETED)"),
    "p99_answer_ms": Name("p99 wait for the first answer", "ms"),
    "users_completed": Name("users holding a stored coupon", "users"),
    "users_gave_up": Name("users who gave up waiting", "users"),
    "rank_correlation": Name("rank correlation of arrival and winning order",
                             meaning="1: winners won in arrival order"),
    "answer_ms": Name("wait for the first answer", "ms",
                      "from the press to the service's reply (202, 409, 410...)"),
    "stored_s": Name("wait from press to coupon stored", "s",
                     "from the press until the user's status reads COMPLETED (polled "
                     "every traffic.status_poll_ms)"),
    "stock_left": Name("stock left", "coupons"),
    "backlog": Name("queue backlog", "entries",
                    "issued coupons not yet stored by a consumer"),
    "drained_per_s": Name("queue entries drained per second", "entries/s",
                          "stock taken minus the backlog's growth, per sample: entries "
                          "the consumers finished (stored or compensated; in the seed, "
                          "popped, stored or not)"),
    "room": Name("users in the waiting room", "users"),
    "admitted_per_s": Name("users admitted from the room per second", "users/s"),
    "requests_per_s": Name("requests per second", "requests/s"),
    "time_s": Name("time from 14:00:00", "s"),
}

PARAMETERS: dict[str, Name] = {
    "consumers.count": Name("number of consumers"),
    "consumers.batch_size": Name("consumer batch size", "entries"),
    "traffic.users": Name("number of users"),
    "latency.network_ms": Name("one-way network latency", "ms"),
    "latency.database_batch_ms": Name("database time per batch", "ms"),
    "latency.database_row_ms": Name("database time per row", "ms"),
    "gateway.admission_batch": Name("users admitted per round", "users"),
    "gateway.rate_limit_per_s": Name("rate limit", "requests/s"),
    "event.stock": Name("stock", "coupons"),
}

_UNITS = (("_per_s", "per s"), ("_ms", "ms"), ("_s", "s"), ("_share", "share"))

PATHS: dict[str, str] = {
    "direct": "straight to Redis",
    "sold-out flag": "sold-out flag (answered without Redis)",
    "answered by the sold-out flag": "sold-out flag (answered without Redis)",
    "queued: rate limited": "to the room: rate limiter refused",
    "queued: breaker open": "to the room: breaker open",
    "queued: timed out": "to the room: time limiter",
    "queued: others were waiting": "to the room: others were waiting",
    "queued: before the start": "to the room: pressed before the start",
}
"""The way a request went through the service (the model's ``path`` column)."""

OUTCOMES: dict[str, str] = {
    "COMPLETED": "coupon stored",
    "ISSUED": "told issued, not stored yet",
    "FAILED": "issued, then failed (compensated)",
    "FORGOTTEN": "told issued, forgotten by a failover",
    "GAVE_UP": "gave up waiting for the status",
    "LEFT": "left the waiting room",
    "SOLD_OUT": "told sold out",
    "DUPLICATE": "already held one",
    "NOT_ACTIVE": "sale not active",
    "QUEUED": "still in the waiting room",
}
"""How a user ended (their best request's final state)."""


def metric(key: str) -> Name:
    """The registered name of ``key``; an unknown key is a bug, so it raises KeyError."""
    return METRICS[key]


def parameter(key: str) -> Name:
    """A scenario field's name: registered, or the field itself with the unit its name
    carries (``latency.network_ms`` -> ms; ``*.count`` counts its section)."""
    if key in PARAMETERS:
        return PARAMETERS[key]
    for suffix, unit in _UNITS:
        if key.endswith(suffix):
            return Name(key, unit)
    return Name(key, key.split(".")[0] if key.endswith(".count") else "")


def path(key: str) -> str:
    return PATHS.get(key, key)


def outcome(key: str) -> str:
    return OUTCOMES.get(key, key)
