"""``couponsim report``: every notebook executed with larger parameters and exported
to HTML with its figures, for readers who will not run Jupyter.

papermill executes (it injects the parameters after the cell tagged
``parameters``, as CI's small sizes are replaced by the report's), nbconvert
exports (figures are embedded in the page as data URIs, so one HTML file is the
whole notebook). A notebook that fails is still exported, with its error in
place, and reported: a broken invariant is something the reader must see.
"""

import os
import sys
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from couponsim.errors import InvalidInput, MissingExtra

REPORT_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_black_friday": {"USERS": 50_000, "STOCK": 1_000},
    "02_overload_10x": {"USERS": 20_000, "STOCK": 1_000, "INSTANCES": 1,
                        "INSTANCE_CPU_MS": 0.25, "BREAKER_WINDOW": 100},
    "03_races": {"EXAMPLES": 2_000, "SCHEDULE_LIMIT": 100_000, "SPIKE_USERS": 5_000},
    "05_model_validation": {"REQUESTS": 4_000, "REPLICATIONS": 20},
    "06_redemption": {"USERS": 2_000},
    "07_failover": {"USERS": 20_000, "STOCK": 1_000, "SPREAD_S": 2.0, "DIES_AT_S": 0.08,
                    "MAX_LAG_MS": 80, "REPLICATIONS": 3},
    "08_model_vs_reality": {"USERS": 600, "RUNS": 3, "SPREAD_S": 2.0},
}
"""The report's sizes, by notebook; a notebook not named here runs with its own."""


@dataclass(frozen=True)
class NotebookReport:
    name: str
    html: Path
    executed: Path
    """The executed notebook, outputs included."""
    error: str | None
    """Why execution stopped (e.g. an assertion on an invariant), or None."""

    @property
    def ok(self) -> bool:
        return self.error is None


def build_report(notebooks: Path, out: Path,
                 parameters: Mapping[str, Mapping[str, Any]] = REPORT_PARAMETERS,
                 progress: bool = True, jobs: int | None = None) -> list[NotebookReport]:
    """Execute every ``*.ipynb`` of ``notebooks`` with ``parameters`` and write
    NAME.ipynb and NAME.html to ``out``; pages come back in name order.

    Notebooks run ``jobs`` at a time (default: one per core this process may use),
    each in its own process and kernel: they share nothing, and one kernel keeps one
    core busy, so more at once than cores only makes each slower."""
    try:
        import nbconvert  # noqa: F401
        import papermill  # noqa: F401  (checked here: the workers import it again)
    except ImportError as exc:
        raise MissingExtra("notebooks", f"the report needs papermill and nbconvert ({exc})"
                           ) from None
    sources = sorted(notebooks.glob("*.ipynb")) if notebooks.is_dir() else []
    if not sources:
        raise InvalidInput(f"no notebooks (*.ipynb) in {notebooks}: run the report from the "
                           "repository's root, or name the directory with --notebooks")
    if jobs is not None and jobs < 1:
        raise InvalidInput(f"--jobs {jobs}: at least 1")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"--out {out}: {exc}") from None
    workers = min(len(sources), jobs or len(os.sched_getaffinity(0)))
    reports: dict[str, NotebookReport] = {}
    with ProcessPoolExecutor(workers) as pool, tqdm(
            total=len(sources), unit="notebook", desc=f"report ({workers} at a time)",
            disable=not progress or None, file=sys.stderr) as bar:
        futures = [pool.submit(build_page, source, out, dict(parameters.get(source.stem, {})))
                   for source in sources]
        for future in as_completed(futures):
            page = future.result()
            reports[page.name] = page
            bar.update(1)
    return [reports[source.stem] for source in sources]


def build_page(source: Path, out: Path, parameters: dict[str, Any]) -> NotebookReport:
    """One notebook executed (papermill) and exported to one HTML page (nbconvert)."""
    import papermill
    from nbconvert import HTMLExporter

    executed, html = out / source.name, out / f"{source.stem}.html"
    error = None
    try:
        papermill.execute_notebook(source, executed, parameters=parameters,
                                   cwd=source.parent, progress_bar=False)
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    exporter = HTMLExporter()  # type: ignore[no-untyped-call]  # nbconvert has no hints here
    body, _resources = exporter.from_filename(str(executed))
    html.write_text(body, encoding="utf-8")
    return NotebookReport(source.stem, html, executed, error)
