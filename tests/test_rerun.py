"""Notebooks are safe to rerun and deterministic.

* Every code cell run twice in a row (a student pressing Shift-Enter again) still passes:
  `make test` runs nbval with ``--rerun-notebooks`` (tests/conftest.py), which executes each
  notebook cell twice; the tests here check that the option really does that.
* A notebook run twice, each time in a fresh kernel, prints the same numbers (timings aside):
  tests/test_grading.py checks it on the lesson that nbgrader autogrades there, one of the two
  runs being nbgrader's.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def run_nbval(tmp_path, cells, *options):
    """nbval on a small notebook of ``cells`` in a fresh pytest, with this suite's conftest
    (its --rerun-notebooks option) loaded as a plugin; returns (exit code, output)."""
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "--rootdir", str(tmp_path), "-c", os.devnull, "--nbval-lax", "--nbval-current-env",
                        *options, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


ONCE_ONLY = ['assert "ran" not in globals(), "this cell already ran once"\nran = True']


def test_rerun_option_runs_every_notebook_cell_twice(tmp_path):
    code, out = run_nbval(tmp_path, ONCE_ONLY, "--rerun-notebooks")
    assert code == 1 and "this cell already ran once" in out, out[-2000:]


def test_without_the_option_each_cell_runs_once(tmp_path):
    code, out = run_nbval(tmp_path, ONCE_ONLY)
    assert code == 0 and "1 passed" in out, out[-2000:]


def test_the_test_command_runs_the_notebooks_with_every_cell_twice():
    from scripts import test as test_command
    cmd, _ = test_command.command()
    assert "--rerun-notebooks" in cmd and cmd[-1] == "notebooks", cmd
    recipe = subprocess.run(["make", "-n", "-s", "test"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "-m scripts.test" in recipe, recipe                       # make test runs the same command
    assert "-m scripts.test" in (ROOT / ".ci" / "run").read_text()   # and so does CI


def test_a_rerun_safe_notebook_passes_twice(tmp_path):
    cells = ["runs = globals().get('runs', 0) + 1\nprint('run', runs)", "x = [1, 2]\nassert sum(x) == 3"]
    code, out = run_nbval(tmp_path, cells, "--rerun-notebooks")
    assert code == 0 and "2 passed" in out, out[-2000:]


def test_only_experiment_loops_run_once():
    """The ``run-once`` tag (conftest.RUN_ONCE) spares CI a second pass of a lesson's long
    experiment loop; it must not hide a cell whose rerun could break: a tagged cell trains and
    builds its results afresh (it changes, by item, attribute or ``+=``, only what it bound
    itself before, such as ``results = {}``), and no other cell carries the tag."""
    import nbformat
    from conftest import RUN_ONCE
    tagged = [(path.name, cell.source) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
              for cell in nbformat.read(path, as_version=4).cells if RUN_ONCE in cell.metadata.get("tags", [])]
    assert len(tagged) <= 8, [name for name, _ in tagged]
    for name, source in tagged:
        trains = re.search(r"\b(run|finetune|train\w*|fit\w*|sweep)\(", source)
        assert trains and not _changes_what_it_did_not_bind(source), (name, source[:200])


def _changes_what_it_did_not_bind(source: str) -> list[str]:
    """Names a cell changes in place (``x[k] = ...``, ``x.a = ...``, ``x += ...``) before
    binding them itself: state a rerun would carry over."""
    import ast
    bound, outside = set(), []

    class Visit(ast.NodeVisitor):
        def visit_Assign(self, node):
            self.visit(node.value)
            for target in node.targets:
                self.target(target)

        def visit_AugAssign(self, node):
            self.visit(node.value)
            root = node.target
            while isinstance(root, (ast.Subscript, ast.Attribute)):
                root = root.value
            if isinstance(root, ast.Name) and root.id not in bound:
                outside.append(root.id)

        def target(self, t):
            if isinstance(t, ast.Name):
                bound.add(t.id)
            elif isinstance(t, (ast.Tuple, ast.List)):
                for e in t.elts:
                    self.target(e)
            elif isinstance(t, (ast.Subscript, ast.Attribute)):
                root = t
                while isinstance(root, (ast.Subscript, ast.Attribute)):
                    root = root.value
                if isinstance(root, ast.Name) and root.id not in bound:
                    outside.append(root.id)

        def visit_For(self, node):
            self.visit(node.iter)
            self.target(node.target)
            for stmt in node.body + node.orelse:
                self.visit(stmt)

        def visit_FunctionDef(self, node):
            bound.add(node.name)                     # its body runs later, on its own locals
    Visit().visit(ast.parse(source))
    return outside


def test_the_run_once_rule_sees_state_a_rerun_would_carry_over():
    assert _changes_what_it_did_not_bind("results = {}\nfor k in range(3):\n    results[k] = fit(k)") == []
    assert _changes_what_it_did_not_bind("one = run(1)\ntwo = run(2)") == []
    assert _changes_what_it_did_not_bind("for k in range(3):\n    results[k] = fit(k)") == ["results"]
    assert _changes_what_it_did_not_bind("total += train(3)") == ["total"]
    assert _changes_what_it_did_not_bind("model.w = fit(1)") == ["model"]
