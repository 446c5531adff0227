"""scripts/run_cells.py: notebooks run as plain Python; --keep-going logs every failed claim."""
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent


def _notebook(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("assert x == 2, 'x is not 2'\nprint('not reached')"),
                             new_code_cell("print('third cell ran', x)")])
    path = tmp_path / "claims.ipynb"
    nbformat.write(nb, path)
    return path


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_cells.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_a_failed_assert_stops_the_run(tmp_path):
    run = _run(_notebook(tmp_path))
    assert run.returncode != 0 and "x is not 2" in run.stderr and "third cell ran" not in run.stdout


def test_keep_going_reports_and_continues(tmp_path):
    run = _run("--keep-going", _notebook(tmp_path))
    assert run.returncode == 1
    assert "cell 1: ASSERTION FAILED: x is not 2" in run.stdout
    assert "not reached" not in run.stdout and "third cell ran 1" in run.stdout
    assert "1 with a failed assert" in run.stdout
