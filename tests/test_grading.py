"""nbgrader: the notebooks' exercises are marked for it, its student version is `make student`'s,
raises at the first exercise, and autograding the instructor version gives full marks.

The autograded lesson is also this suite's determinism check: nbgrader runs it in a fresh
kernel, and a second fresh kernel must print the same numbers (timings aside).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_rerun import client, printed_lines   # a fresh kernel; what a notebook printed, timings left out

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GRADED = "06_binding_many_modalities.ipynb"     # three exercises, five trainings in a minute


from scripts import assignments, notebook_io, student_copies  # noqa: E402


def code_sources(nb) -> list[str]:
    return [notebook_io.source(c) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", assignments.lessons_with_exercises(), ids=lambda p: p.name)
def test_notebook_is_marked_for_nbgrader(path):
    nb = nbformat.read(path, as_version=4)
    assert assignments.mark(nb) == nb, f"run `python -m scripts.assignments mark {path.relative_to(ROOT)}`"
    kinds = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
    solutions = [m for m in kinds if m["solution"]]
    tests = [m for m in kinds if m["grade"]]
    assert solutions and len(tests) == len(solutions) == sum("### BEGIN SOLUTION" in c.source for c in nb.cells)
    assert all(m["locked"] and m["points"] > 0 for m in tests)
    assert len({m["grade_id"] for m in kinds}) == len(kinds), "grade ids must be unique in a notebook"


def test_mark_splits_the_check_off_and_locks_the_exercise():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("### Exercise 1: f\nReturn x. Hint: `return x`."),
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\ncheck(f)"),
        nbformat.v4.new_code_cell("print('after')")])
    before = nbformat.writes(nb)
    marked = assignments.mark(nb)
    assert nbformat.writes(nb) == before                                  # the input is left alone
    assert [c.source for c in marked.cells[1:]] == [
        "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION", "check(f)", "print('after')"]
    meta = [c.metadata.get("nbgrader", {}) for c in marked.cells]
    assert meta[0]["locked"] and meta[1]["solution"] and not meta[1]["locked"]
    assert meta[2]["grade"] and meta[2]["locked"] and meta[2]["points"] == assignments.POINTS and meta[3] == {}
    assert assignments.mark(marked) == marked                             # marking twice changes nothing
    nb.cells[1].source = "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"
    with pytest.raises(ValueError, match="cell 1: a solution block outside a function"):
        assignments.mark(nb)
    nb.cells = nb.cells[:1] + [nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION")]
    with pytest.raises(ValueError, match="cell 1: the solution `f` has no check"):
        assignments.mark(nb)


def test_release_needs_an_nbgrader_course_and_lessons_with_exercises(tmp_path):
    with pytest.raises(ValueError, match="course: got .* expected a folder with nbgrader_config.py"):
        assignments.release(tmp_path, [NOTEBOOKS / GRADED])
    assert assignments.lessons_with_exercises(["lesson06", str(NOTEBOOKS / GRADED)]) == [NOTEBOOKS / GRADED] * 2
    assert len(assignments.lessons_with_exercises()) == 9
    with pytest.raises(ValueError, match="'lesson00' has no exercises"):
        assignments.lessons_with_exercises(["lesson00"])
    with pytest.raises(ValueError, match="got 'lesson42', expected a notebook's path or an assignment id"):
        assignments.lessons_with_exercises(["lesson42"])


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """An nbgrader course folder with lesson 06 released, configured by grading/'s file (one
    lesson: generate_assignment takes about 10 s a lesson; `make assignments` releases them all)."""
    pytest.importorskip("nbgrader")
    root = tmp_path_factory.mktemp("course")
    (root / "nbgrader_config.py").write_text(f"load_subconfig('nbgrader_config.py', path={str(ROOT / 'grading')!r})\n")
    assignments.release(root, [NOTEBOOKS / GRADED])
    return root


@pytest.mark.slow
def test_nbgrader_writes_the_stubs_make_student_writes(course):
    name = GRADED
    released = json.loads((course / "release" / assignments.assignment_id(name) / name).read_text())
    student = student_copies.student_notebook(json.loads((NOTEBOOKS / name).read_text()))
    source = notebook_io.source
    assert [source(c) for c in released["cells"]] == [source(c) for c in student["cells"]]
    assert "colab-badge" not in json.dumps(released) and student_copies.STUDENT_NOTE in source(released["cells"][0])
    locked = [c for c in released["cells"] if c["metadata"].get("nbgrader", {}).get("locked")]
    assert locked and all(c["metadata"].get("editable") is False for c in locked)


@pytest.mark.slow
def test_the_student_version_raises_at_its_first_exercise(course):
    """Run nbgrader's student version of lesson 06 cell by cell: every cell up to the first
    exercise's stub runs, and the first autograded check fails with that exercise's hint."""
    path = course / "release" / assignments.assignment_id(GRADED) / GRADED
    cells = code_sources(json.loads(path.read_text()))
    first = next(k for k, c in enumerate(cells) if "NotImplementedError" in c)
    hint = json.loads(re.search(r'raise NotImplementedError\((".*")\)', cells[first]).group(1))
    env = dict(os.environ, TUTORLIB_PROFILE="quick", MPLBACKEND="Agg", TQDM_DISABLE="1")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_cells.py"), str(path)],
                         capture_output=True, text=True, env=env, timeout=600)
    ran = [int(m) for m in re.findall(r"cell (\d+): [\d.]+ s", run.stdout)]
    assert run.returncode != 0 and ran == list(range(first + 1)), run.stderr[-2000:]
    assert "ExerciseError" in run.stderr and "is not written yet" in run.stderr and hint in run.stderr


@pytest.mark.slow
def test_autograding_the_instructor_version_gives_full_marks_and_the_numbers_repeat(course):
    from nbgrader.api import Gradebook
    aid = assignments.assignment_id(GRADED)
    submitted = course / "submitted" / "instructor" / aid
    submitted.mkdir(parents=True)
    shutil.copyfile(NOTEBOOKS / GRADED, submitted / GRADED)
    run = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", aid, "--force"], cwd=course,
                         capture_output=True, text=True, env=assignments.nbgrader_env(), timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "cross-modal-alignment") as gb:
        sub = gb.find_submission(aid, "instructor")
        grades = {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades}
        assert len(grades) == 3 and sub.max_score == 3 * assignments.POINTS
        assert sub.score == sub.max_score, grades
    # the same lesson in a second fresh kernel prints the same numbers
    graded = nbformat.read(course / "autograded" / "instructor" / aid / GRADED, as_version=4)
    fresh = nbformat.read(NOTEBOOKS / GRADED, as_version=4)
    client(fresh).execute()
    first, second = printed_lines(graded), printed_lines(fresh)
    assert len(first) > 10
    diff = [(a, b) for a, b in zip(first, second) if a != b]
    assert first == second, f"{len(diff)} lines differ, e.g. {diff[:3]}"
