"""DataFrames a reader compares side by side: invariant reports and run summaries.

Notebooks show several runs (seed and hardened, before and after a fix) as one
table each, so the difference is read across a row rather than hunted for in
two printouts.
"""

from collections.abc import Mapping
from typing import Any

import pandas as pd

from couponsim.verify import InvariantReport


def invariant_table(reports: Mapping[str, InvariantReport]) -> pd.DataFrame:
    """One row per invariant; per report, the figure it was judged on and the verdict
    ("ok" or "BROKEN"), in columns named after the report's label."""
    columns: dict[tuple[str, str], dict[str, object]] = {}
    for label, report in reports.items():
        columns[(label, "observed")] = {c.name: c.observed for c in report.checks}
        columns[(label, "verdict")] = {c.name: "ok" if c.ok else "BROKEN"
                                       for c in report.checks}
    table = pd.DataFrame(columns)
    table.index.name = "invariant"
    return table


def summary_table(summaries: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Nested summaries (a run's ``summary``) flattened to ``section.field`` rows, one
    column per label; a field one summary lacks is left empty."""
    return pd.DataFrame({label: pd.json_normalize(dict(summary)).iloc[0]
                         for label, summary in summaries.items()})


def told_table(runs: Mapping[str, tuple[pd.DataFrame, InvariantReport]]) -> pd.DataFrame:
    """What users were told against what the store holds, one column per run (its
    requests table and its report): the checker's three verdicts on the statuses and
    caches, and two counts only the users' side can give (a user who gave up waiting
    was never told; a coupon holder never told COMPLETED won without knowing it)."""
    columns = {}
    for label, (requests, report) in runs.items():
        told = report.told
        completed = set(requests.loc[requests.final_state == "COMPLETED", "user"])
        first = requests[requests.kind == "first click"]
        bots = set(requests.loc[requests.kind == "bot", "user"])   # they wait for nothing
        columns[label] = {
            "told COMPLETED, no coupon stored":
                len(told.completed_unstored or ()) if told else None,
            "left PROCESSING once drained": len(told.processing_drained) if told else None,
            "shown a code the database does not hold for them":
                len(told.codes_not_held or ()) if told else None,
            "users never told an outcome (gave up waiting)":
                int((first.final_state == "GAVE_UP").sum()),
            "coupon holders never told COMPLETED":
                len(set(report.coupons_per_user) - completed - bots),
        }
    table = pd.DataFrame(columns)
    table.index.name = "what users were told"
    return table
