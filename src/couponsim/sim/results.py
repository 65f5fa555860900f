"""What a run produced, as a capacity planner reads it: tables, a summary, figures.

The invariants and fairness are judged on the store itself after the run; the
tables come from what the model recorded about each request and each sample.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from couponsim.fairness import Fairness, fairness
from couponsim.flows import Variant
from couponsim.sim.records import START_MS, CheckoutRecord, RequestRecord, Run, Sample
from couponsim.sim.traffic import Kind
from couponsim.verify import InvariantReport


@dataclass(frozen=True)
class Outcome:
    run: Run
    requests: pd.DataFrame
    """One row per request: why it was sent (kind), arrival, path, answer, latencies
    (s from 14:00:00, ms)."""
    timeline: pd.DataFrame
    """One row per 100 ms sample: stock left, queue backlog, room size, breaker state,
    and requests answered in that bucket."""
    report: InvariantReport
    fairness: Fairness
    wall_s: float
    checkouts: pd.DataFrame
    """One row per apply or release at checkout (Story 3): user, order, code, outcome,
    start (s from 14:00:00) and latency (ms)."""
    lost: tuple[str, ...] = ()
    """Requests answered ISSUED that ended as no coupon and no compensation."""

    @property
    def summary(self) -> dict[str, Any]:
        people = self.requests[self.requests.kind != Kind.BOT.value]
        bots = self.requests[self.requests.kind == Kind.BOT.value]
        answered = self.requests.dropna(subset=["answer_ms"])
        stored = self.requests[self.requests.final_state == "COMPLETED"]
        sold_out = self.timeline.loc[self.timeline.stock_left <= 0, "t_s"]
        latency = {
            path: {f"p{q}": round(float(group.answer_ms.quantile(q / 100)), 2)
                   for q in (50, 95, 99)}
            for path, group in answered.groupby("path")
        }
        return {
            "scenario": self.run.scenario.name, "variant": self.run.scenario.variant.value,
            "users": self.run.scenario.traffic.users, "requests": len(self.requests),
            "users_by_final_state": users_by_final_state(people),
            "requests_by_kind": {str(k): int(n)
                                 for k, n in self.requests.kind.value_counts().items()},
            "bot_coupons": int((bots.answer == "ISSUED").sum()),
            "checkouts": {f"{action} {outcome}": int(n) for (action, outcome), n in
                          self.checkouts.groupby(["action", "outcome"]).size().items()}
            if len(self.checkouts) else {},
            "sell_out_s": None if sold_out.empty else round(float(sold_out.iloc[0]), 3),
            "last_arrival_s": round(float(people.arrival_s.max()), 3),
            "all_final_s": round(float(people.final_s.max()), 3),
            "last_stored_s": round(float(stored.final_s.max()), 3) if len(stored) else None,
            "answer_latency_ms_by_path": latency,
            "coupon_stored_latency_ms": {f"p{q}": round(float(
                stored.status_ms.quantile(q / 100)), 2) for q in (50, 95, 99)}
            if len(stored) else None,
            "redis_commands_per_request": round(float(self.requests.redis_commands.mean()), 2),
            "invariants_ok": self.report.ok,
            "acknowledged_lost": len(self.lost),
            "fairness": {"early_share": round(self.fairness.early_share, 4),
                         "overtaken": self.fairness.overtaken,
                         "rank_correlation": None if self.fairness.rank_correlation is None
                         else round(self.fairness.rank_correlation, 4)},
            "wall_s": round(self.wall_s, 2),
        } | ({} if (failover := self.run.failover) is None else {"failover": {
            "at_s": round((failover.at_ms - START_MS) / 1000, 3),
            "replication_lag_ms": round(failover.lag_ms, 3),
            "acknowledged_before": failover.acknowledged,
            "forgotten": len(failover.forgotten)}}) | (
            {"seed_options": asdict(self.run.scenario.seed_options)}
            if self.run.scenario.variant is Variant.SEED else {})


OUTCOME_RANK = ("COMPLETED", "ISSUED", "FAILED", "FORGOTTEN", "GAVE_UP", "LEFT", "SOLD_OUT",
                "DUPLICATE", "NOT_ACTIVE")
"""A user with several requests (a double click, a press before the start and again
after) ends with the best of them: a stored coupon over a refusal."""


def users_by_final_state(requests: pd.DataFrame) -> dict[str, int]:
    rank = {state: n for n, state in enumerate(OUTCOME_RANK)}
    best = requests.assign(rank=requests.final_state.map(rank).fillna(len(rank)))
    per_user = best.sort_values("rank").drop_duplicates("user").final_state
    return {str(state): int(n) for state, n in per_user.value_counts().items()}


def frame(records: Sequence[Any], kind: type) -> pd.DataFrame:
    """One row per record of dataclass ``kind``, built a column at a time: a dict per
    row would hold a second copy of a large crowd's records at once."""
    names = [f.name for f in fields(kind)]
    return pd.DataFrame({name: [getattr(r, name) for r in records] for name in names},
                        columns=names)


def tables(run: Run) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    requests = frame(run.requests, RequestRecord)
    requests["arrival_s"] = (requests.arrival_ms - START_MS) / 1000
    requests["answer_ms"] = requests.answered_ms - requests.arrival_ms
    requests["status_ms"] = requests.final_ms - requests.arrival_ms
    requests["final_s"] = (requests.final_ms - START_MS) / 1000
    requests = requests.drop(columns=["arrival_ms", "answered_ms", "final_ms"])
    timeline = frame(run.samples, Sample)
    timeline["t_s"] = (timeline.at_ms - START_MS) / 1000
    answered_at = pd.Series((r.answered_ms for r in run.requests if r.answered_ms), dtype=float)
    buckets = ((answered_at - START_MS) // 100).value_counts()
    timeline["answered"] = ((timeline.at_ms - START_MS) // 100).map(buckets).fillna(0)
    checkouts = frame(run.checkouts, CheckoutRecord)
    checkouts["start_s"] = (checkouts.started_ms - START_MS) / 1000
    checkouts["latency_ms"] = checkouts.done_ms - checkouts.started_ms
    checkouts = checkouts.drop(columns=["started_ms", "done_ms"])
    return requests, timeline.drop(columns=["at_ms"]), checkouts


def room_waits(outcome: Outcome) -> pd.DataFrame:
    """For each request of a person (not a bot) that waited in the room: its place,
    the wait the configured admission pace promised (place / users admitted per
    second) and the wait it got (until its final answer). The promise ignores
    sell-out, which ends every wait at once, and a place in the pre-queue (joined
    before the start) is only a draw that later joiners may beat: the table shows
    how far a room's estimate can be trusted."""
    gateway = outcome.run.scenario.gateway
    pace = gateway.admission_batch / gateway.admission_interval_s
    requests = outcome.requests
    waited = requests[(requests.room_position > 0) & (requests.kind != Kind.BOT.value)]
    return pd.DataFrame({
        "user": waited.user, "joined_s": waited.arrival_s, "position": waited.room_position,
        "estimated_wait_s": waited.room_position / pace,
        "actual_wait_s": (waited.status_ms - waited.answer_ms) / 1000,
        "final_state": waited.final_state})


def judge_fairness(run: Run, winners: list[str]) -> Fairness:
    arrivals = [r.user for r in sorted(run.requests, key=lambda r: r.arrival_ms)]
    return fairness(arrivals, winners, run.scenario.event.stock)


def save(outcome: Outcome, directory: Path) -> list[Path]:
    """Write the tables (CSV), the summary (JSON) and the planner's figure (PNG) to
    ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "requests.csv", directory / "timeline.csv",
               directory / "checkouts.csv", directory / "summary.json",
               directory / "figures.png"]
    outcome.requests.to_csv(written[0], index=False)
    outcome.timeline.to_csv(written[1], index=False)
    outcome.checkouts.to_csv(written[2], index=False)
    written[3].write_text(json.dumps(outcome.summary, indent=2, default=str))
    # Imported here: matplotlib costs every CLI command half a second at start.
    from couponsim.sim.figures import figure

    figure(outcome).savefig(written[4], dpi=110, bbox_inches="tight")
    return written
