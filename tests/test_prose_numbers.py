"""No per-run numbers typed into a notebook's prose (COURSE.md: numbers come from code).

Every decimal figure or percentage in a markdown cell must be a constant of a method, of
the world, or a figure a paper reports (named as such): the one list of them is
``CONSTANTS`` below. A measured number (a recall, a gap, a margin, a per-seed value)
belongs in a code cell's output, where a rerun under another seed cannot contradict it.
"""
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# figure -> what it is (a constant of the method, the world or a paper; never a result)
CONSTANTS = {
    "0.06": "lesson 00: the colour tolerance of the renderer's test",
    "0.07": "CLIP's initial temperature; m2-mix's default mixing temperature",
    "2.66": "ln(1/0.07), CLIP's initial logit scale",
    "14.3": "1/0.07, CLIP's initial scale",
    "0.01": "the temperature at CLIP's clamp (scale 100); m2-mix's fixed base temperature; OTI's weight decay",
    "0.5": "chance of the binding test; Beta(0.5, 0.5); ties count one half",
    "0.1": "a ratio of the recipe (text lr 0.1x); a lambda probed in lesson 02; an exercise's setting",
    "1.0": "an exercise's setting",
    "0.9": "lesson 02: a lambda probed (0.1, 0.5, 0.9)",
    "0.001": "the low end of m2-mix's official loss weights",
    "0.05": "the high end of m2-mix's official loss weights",
    "0.02": "CoOp's context init std; OTI's lr and init std",
    "25%": "FILIP: the fraction of tokens its paper keeps before gathering across devices",
    "0.45": "lesson 03's new camera: contrast factor",
    "0.3": "lesson 03's new camera: brightness offset",
    "0.056": "1/18, chance of lesson 03's classes",
    "0.2": "RESTORE's feature-shift ratio r",
    "2.5": "OneEncoder's clamp of its temperature parameter, lower end",
    "12.2": "e^2.5, OneEncoder's smallest scale",
}
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])|(?<![\w.])\d+(?:\.\d+)?\s?%")
ARXIV = re.compile(r"arXiv \d{4}\.\d{4,5}")


def figures(text: str) -> list[str]:
    return [m.group().replace(" ", "") for m in FIGURE.finditer(ARXIV.sub("", text))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_measured_numbers_in_markdown(path):
    nb = nbformat.read(path, as_version=4)
    found = [(i, f) for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
             for f in figures(cell.source) if f not in CONSTANTS]
    assert not found, (f"{path.name}: figures in markdown that are not constants of a method "
                       f"(cell, figure): {found}; print them from a code cell, or add a true constant "
                       f"to CONSTANTS in {Path(__file__).name}")


def test_scanner_finds_what_it_should():
    assert figures("recall 0.86 and 40% and 3.3 points, not arXiv 2203.03897 nor v1.2.3") == ["0.86", "40%", "3.3"]
    assert figures("ln 64 and 1/18 and $e^{2.5}$") == ["2.5"]
