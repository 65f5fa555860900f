"""``couponsim report``: notebooks executed with the report's parameters, exported to HTML."""

import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from couponsim.cli import main
from couponsim.errors import InvalidInput, MissingExtra
from couponsim.report import build_report


def tiny_notebook(path: Path, body: str) -> None:
    cells = [new_markdown_cell("# Tiny\n\nA plot of N points."),
             new_code_cell("N = 3"), new_code_cell(body)]
    cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}), path)


PLOT = """import matplotlib.pyplot as plt
print(f"plotted {N} points")
plt.plot(range(N))
plt.title("points");"""


@pytest.mark.slow
def test_the_report_runs_each_notebook_with_its_parameters_and_embeds_figures(
        tmp_path: Path) -> None:
    notebooks, out = tmp_path / "notebooks", tmp_path / "out"
    notebooks.mkdir()
    tiny_notebook(notebooks / "tiny.ipynb", PLOT)
    tiny_notebook(notebooks / "broken.ipynb", "assert N == 3, 'an invariant broke'")
    pages = build_report(notebooks, out, {"tiny": {"N": 7}, "broken": {"N": 4}},
                         progress=False)
    assert [(page.name, page.ok) for page in pages] == [("broken", False), ("tiny", True)]
    assert pages[0].error is not None and "an invariant broke" in pages[0].error
    html = (out / "tiny.html").read_text()
    assert "plotted 7 points" in html, "the report's parameters replaced the notebook's"
    assert "data:image/png;base64," in html, "the figure is inside the page"
    assert "an invariant broke" in (out / "broken.html").read_text(), "a failure is shown too"
    assert (out / "tiny.ipynb").is_file()


@pytest.mark.slow
def test_the_command_exits_1_when_a_notebook_fails_and_2_without_notebooks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    tiny_notebook(notebooks / "broken.ipynb", "assert N == 4, 'an invariant broke'")
    assert main(["report", "--notebooks", str(notebooks), "--out", str(tmp_path / "o")]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["report", "--notebooks", str(tmp_path / "none")]) == 2
    assert "no notebooks" in capsys.readouterr().err
    assert main(["report", "--notebooks", str(notebooks), "--jobs", "0"]) == 2
    assert "--jobs 0: at least 1" in capsys.readouterr().err


def test_without_the_notebooks_extra_the_error_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput):
        build_report(tmp_path / "missing", tmp_path / "out")
    monkeypatch.setitem(sys.modules, "papermill", None)
    with pytest.raises(MissingExtra, match=r"pip install -e '\.\[notebooks\]'"):
        build_report(tmp_path, tmp_path / "out")
