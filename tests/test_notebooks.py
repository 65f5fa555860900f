"""The notebooks as committed: outputs stripped, and each opens the same way.

nbstripout's git filter is configured per clone, so it can be missing; this test
is what keeps outputs (and their churn) out of the repository. The layout
checks hold every notebook to the conventions ``couponsim report`` relies on.
"""

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_committed_notebook_carries_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    dirty = [n for n, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} keep outputs; run nbstripout on it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_opens_with_its_story_then_its_parameters(path: Path) -> None:
    """First a title and one paragraph; then one cell tagged ``parameters`` holding only
    plain assignments, which papermill replaces with the report's sizes."""
    story, parameters, *_rest = nbformat.read(path, as_version=4).cells
    title, *paragraphs = [block for block in story.source.split("\n\n") if block.strip()]
    assert story.cell_type == "markdown" and title.startswith("# ") and len(paragraphs) == 1
    assert parameters.cell_type == "code"
    assert "parameters" in parameters.metadata.get("tags", [])
    statements = ast.parse(parameters.source).body
    assert statements and all(isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)
                              for s in statements)
