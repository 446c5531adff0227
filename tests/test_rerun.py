"""Notebooks are safe to rerun and deterministic.

* Every code cell run twice in a row (a student pressing Shift-Enter again) still passes:
  opt-in, `make test-rerun` (it doubles the notebooks' run time, too long for every CI run).
* A notebook run twice, each time in a fresh kernel, prints the same numbers (timings aside).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DETERMINISM = ["05_progressive_alignment.ipynb"]      # it trains four models: the strictest case
TIMING = re.compile(r"\d\s?(s|ms|seconds?)\b|per second|it/s|s/it|\bwall\b", re.I)


def client(nb):
    nbclient = pytest.importorskip("nbclient")
    return nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": str(ROOT / "notebooks")}})


def printed_lines(nb) -> list[str]:
    """What the notebook printed and displayed as text, line by line, timings left out
    (stderr, where tqdm draws its bars, is left out too)."""
    lines = []
    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text = out["text"]
            elif out.get("output_type") in ("execute_result", "display_data"):
                text = out.get("data", {}).get("text/plain", "")
            else:
                continue
            lines += [f"cell {k}: {ln.rstrip()}" for ln in text.splitlines()
                      if ln.strip() and not TIMING.search(ln) and "object at 0x" not in ln]
    return lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_can_run_twice_in_a_row(path, request):
    if not request.config.getoption("--rerun-notebooks"):
        pytest.skip("opt-in: make test-rerun (pytest --rerun-notebooks)")
    import nbformat
    nb = nbformat.read(path, as_version=4)
    c = client(nb)
    with c.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                c.execute_cell(cell, index)
                c.execute_cell(cell, index)          # Shift-Enter again: must not fail


@pytest.mark.parametrize("name", DETERMINISM)
def test_fresh_kernels_print_the_same_numbers(name):
    import nbformat
    runs = []
    for _ in range(2):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        client(nb).execute()
        runs.append(printed_lines(nb))
    assert len(runs[0]) > 10
    diff = [(a, b) for a, b in zip(*runs) if a != b]
    assert runs[0] == runs[1], f"{len(diff)} lines differ, e.g. {diff[:3]}"
