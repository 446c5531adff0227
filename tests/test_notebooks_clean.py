"""Notebooks are committed clean: no outputs, no execution counts. Their checks are the
asserts in their cells (run by nbval), never stored outputs."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs or execution counts; "
                       "run `make clean-notebooks` before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_seeds_through_tutorlib(path):
    src = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    assert "seed_everything(" in src, f"{path.name} must seed through tutorlib.seed_everything()"
