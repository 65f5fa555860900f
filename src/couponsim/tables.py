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
