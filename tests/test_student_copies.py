"""scripts/student_copies.py: student versions of the notebooks, solutions replaced by stubs."""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WITH_EXERCISES = [p for p in NOTEBOOKS if "### BEGIN SOLUTION" in p.read_text()]

from scripts import student_copies  # noqa: E402


def code_cells(nb):
    return [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for c in nb["cells"] if c["cell_type"] == "code"]


def digest(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_copies_are_idempotent_and_leave_the_instructor_notebooks_alone(tmp_path):
    before = digest(NOTEBOOKS)
    first = student_copies.write_copies(NOTEBOOKS, tmp_path / "a")
    again = student_copies.write_copies(NOTEBOOKS, tmp_path / "a")
    assert digest(first) == digest(again)
    # a copy of a copy is the copy: nothing is left to stub
    twice = student_copies.write_copies(first, tmp_path / "b")
    assert {p.name: p.read_bytes() for p in twice} == {p.name: p.read_bytes() for p in first}
    assert digest(NOTEBOOKS) == before


def test_copies_keep_everything_but_the_solutions(tmp_path):
    for path in WITH_EXERCISES:
        nb = json.loads(path.read_text())
        copy = json.loads(student_copies.write_copies([path], tmp_path)[0].read_text())
        mine, theirs = code_cells(nb), code_cells(copy)
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            if "### BEGIN SOLUTION" not in a:
                assert a == b
                continue
            assert "SOLUTION" not in b and "raise NotImplementedError(\"Exercise " in b
            kept = re.sub(r"[ \t]*### BEGIN SOLUTION.*?### END SOLUTION\n?", "", a, flags=re.S)
            assert [ln for ln in b.rstrip("\n").split("\n") if "NotImplementedError" not in ln and "YOUR CODE" not in ln] \
                == kept.rstrip("\n").split("\n")       # a solution may end the cell
            assert a.count("check.") == b.count("check.")
        assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
                   for c in copy["cells"] if c["cell_type"] == "code")


def test_stub_and_hint():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\ncheck(f)"
    out = student_copies.stub_cell(src, 'say "hi"')
    assert out == ("def f(x):\n    # YOUR CODE HERE: replace the line below with your solution\n"
                   '    raise NotImplementedError("say \\"hi\\"")\n\ncheck(f)')
    md = "Some text.\n\n### Exercise 2: the `loss`\nReturn $s\\,S$ here. Then more. And more.\n\nHint: use `F.cross_entropy`."
    assert student_copies.hint_of(md) == "Exercise 2: the loss. Return s S here. Then more. Hint: use F.cross_entropy."
    md = "### Exercise 3: *scaled*\nThe logits are `scale * s_i`, that is **s** times a * b.\n\nHint: x."
    assert student_copies.hint_of(md) == "Exercise 3: scaled. The logits are scale * s_i, that is s times a * b. Hint: x."
    title = "# 01 · A lesson\n\n[![Open in Colab](https://c/badge.svg)](https://c/x)\n[![Binder](https://b/logo.svg)](https://b/y)\n\nText."
    assert student_copies.student_markdown(title) == f"# 01 · A lesson\n\n{student_copies.STUDENT_NOTE}\nText."
    assert student_copies.student_markdown(student_copies.student_markdown(title)) == student_copies.student_markdown(title)
    for bad in ("    ### BEGIN SOLUTION\nx", "x\n    ### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION"):
        with pytest.raises(ValueError, match="source"):
            student_copies.stub_cell(bad, "h")
    with pytest.raises(ValueError, match="notebooks"):
        student_copies.write_copies([ROOT / "README.md"], ROOT / "student")


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_student_copy_stops_at_its_first_exercise_with_the_hint(path, tmp_path):
    """Run the copy's cells in order (scripts/run_cells.py): every cell up to the first
    exercise's stub runs, and the first exercise's check (the cell after it) fails saying it is not written yet, with
    the exercise's hint, rather than with an unrelated error further on."""
    copy = student_copies.write_copies([path], tmp_path)[0]
    cells = code_cells(json.loads(copy.read_text()))
    first = next(k for k, c in enumerate(cells) if "NotImplementedError" in c)
    hint = re.search(r'raise NotImplementedError\((".*")\)', cells[first]).group(1)
    env = dict(os.environ, TUTORLIB_PROFILE="quick", MPLBACKEND="Agg", TQDM_DISABLE="1")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_cells.py"), str(copy)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode != 0
    ran = [int(m) for m in re.findall(r"cell (\d+): [\d.]+ s", run.stdout)]
    assert ran == list(range(first + 1)), run.stderr[-2000:]
    assert "ExerciseError" in run.stderr and "is not written yet" in run.stderr, run.stderr[-2000:]
    assert json.loads(hint) in run.stderr


def test_the_default_output_is_a_class_repository_that_binder_and_the_quiz_links_can_use(tmp_path):
    from scripts import set_repository
    out = tmp_path / "class"
    assert student_copies.main(["--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "notebooks").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    reqs = (out / "binder" / "requirements.txt").read_text().splitlines()
    pin = next(ln for ln in reqs if ln.startswith("torch=="))
    assert pin.endswith("+cpu") and "--extra-index-url https://download.pytorch.org/whl/cpu" in reqs
    assert f"tutorlib @ git+{set_repository.repository()}@{set_repository.branch()}" in reqs
    assert reqs.index(pin) < next(k for k, ln in enumerate(reqs) if ln.startswith("tutorlib"))
    assert (out / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")
    for nb in (out / "notebooks").glob("*.ipynb"):                 # every relative link resolves in the copy
        for link in re.findall(r"\]\((\.\./[^)#]+)", nb.read_text()):
            assert (nb.parent / link).resolve().is_file(), (nb.name, link)
    first_code = code_cells(json.loads((out / "notebooks" / NOTEBOOKS[0].name).read_text()))[0]
    assert "google.colab" in first_code and "pip" in first_code   # Colab installs the course library
