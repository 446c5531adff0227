"""The course as nbgrader assignments: one per lesson with exercises.

    python -m scripts.assignments mark [NB...]     # (re)write the nbgrader cell metadata in notebooks/
    python -m scripts.assignments release [--course DIR] [lesson01 | notebooks/01_....ipynb ...]
                                                   # nbgrader generate_assignment, into grading/release/

``mark`` is for whoever writes an exercise. Each code cell with a ``### BEGIN SOLUTION`` block
becomes an nbgrader *solution* cell ending with its function; the code that checks it
(``tutorlib.course.check`` calls, asserts) moves to the next code cell, an *autograded test* cell
worth ``POINTS``, locked; the markdown that states the exercise is locked (read-only). Marking a
marked notebook changes nothing (a test holds the notebooks to that).

``release`` copies each lesson into an nbgrader course folder (``grading/`` by default, whose
``nbgrader_config.py`` is committed) and runs ``nbgrader generate_assignment``. The stubs it
writes are ``make student``'s, with the exercise's hint: the config swaps nbgrader's
``ClearSolutions`` for one that calls ``student_copies.stub_cell``, so there is one mechanism.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

try:
    from scripts import notebook_io
    from scripts.student_copies import BEGIN, END, HEADING
except ImportError:                     # run as a file (python -m scripts.assignments)
    import notebook_io
    from student_copies import BEGIN, END, HEADING

ROOT = Path(__file__).resolve().parent.parent

POINTS = 1
_DEF = re.compile(r"^def (\w+)\(", re.M)


def _split(source: str) -> tuple[str, str]:
    """(solution, rest): the solution ends with the top-level statement that holds the last
    ``### END SOLUTION``; the rest starts at the next line at column 0."""
    lines = source.split("\n")
    last = max(k for k, line in enumerate(lines) if line.strip() == END)
    cut = next((k for k in range(last + 1, len(lines)) if lines[k].strip() and not lines[k][0].isspace()),
               len(lines))
    return "\n".join(lines[:cut]).rstrip("\n"), "\n".join(lines[cut:]).strip("\n")


def _nbgrader(grade_id: str, *, solution=False, grade=False, locked=False) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = POINTS
    return meta


def mark(nb):
    """The notebook (nbformat, version 4) with its exercises marked for nbgrader; the input is
    left alone. Raises ``ValueError`` naming the cell when a solution has no check after it."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)        # a deep copy
    cells, k = nb.cells, 0
    while k < len(cells):
        cell = cells[k]
        if cell.cell_type == "code" and BEGIN in cell.source:
            solution, rest = _split(cell.source)
            names = _DEF.findall(solution)
            if not names:
                raise ValueError(f"cell {k}: a solution block outside a function; expected `def name(...)` around it")
            cell.source = solution
            cell.metadata["nbgrader"] = _nbgrader(names[0], solution=True)
            if rest:
                cells.insert(k + 1, nbformat.v4.new_code_cell(rest, id=f"{cell.id}-check"[:64]))
            test = next((c for c in cells[k + 1:] if c.cell_type == "code"), None)
            if test is None or BEGIN in test.source:
                raise ValueError(f"cell {k}: the solution `{names[0]}` has no check in a code cell after it")
            test.metadata["nbgrader"] = _nbgrader(f"{names[0]}_check", grade=True, locked=True)
        elif cell.cell_type == "markdown" and HEADING.search(cell.source):
            cell.metadata["nbgrader"] = _nbgrader(f"exercise_text_{k}", locked=True)
        k += 1
    return nb


def lessons_with_exercises(names=None) -> list[Path]:
    """The notebooks named (paths, or assignment ids such as ``lesson01``), or every lesson
    with exercises; a name that is neither, or a lesson without exercises, is refused."""
    every = sorted((ROOT / "notebooks").glob("*.ipynb"))
    graded = [p for p in every if BEGIN in p.read_text(encoding="utf-8")]
    if not names:
        return graded
    found = []
    for name in map(str, names):
        match = [p for p in every if assignment_id(p) == name] or ([Path(name)] if Path(name).is_file() else [])
        if not match or match[0].suffix != ".ipynb":
            raise ValueError(f"notebooks: got {name!r}, expected a notebook's path or an assignment id "
                             f"({', '.join(map(assignment_id, graded))})")
        if match[0] not in graded and BEGIN not in match[0].read_text(encoding="utf-8"):
            raise ValueError(f"notebooks: {name!r} has no exercises, so there is nothing to grade")
        found.append(match[0])
    return found


def assignment_id(path: Path) -> str:
    """``lesson01`` for ``01_contrastive_alignment.ipynb``."""
    return "lesson" + Path(path).name[:2]


def nbgrader_env() -> dict:
    """The environment for an nbgrader command: this Python's bin folder first on PATH
    (nbgrader runs ``alembic`` from there for its gradebook)."""
    return dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def release(course: Path, notebooks) -> list[Path]:
    """Copy each notebook into ``course/source/<assignment>/`` and run nbgrader's
    ``generate_assignment`` on it; return the student versions written."""
    course = Path(course)
    if not (course / "nbgrader_config.py").is_file():
        raise ValueError(f"course: got {str(course)!r}, expected a folder with nbgrader_config.py (as grading/)")
    written = []
    for path in notebooks:
        aid = assignment_id(path)
        (course / "source" / aid).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, course / "source" / aid / Path(path).name)
        run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", aid, "--force"],
                             cwd=course, capture_output=True, text=True, env=nbgrader_env())
        if run.returncode:
            raise RuntimeError(f"nbgrader generate_assignment {aid} failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
        written.append(course / "release" / aid / Path(path).name)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["mark", "release"])
    ap.add_argument("notebooks", nargs="*", help="notebooks or assignment ids (default: every lesson with exercises)")
    ap.add_argument("--course", default=str(ROOT / "grading"), help="the nbgrader course folder (release)")
    args = ap.parse_intermixed_args(argv)              # options before or after the notebooks
    try:
        notebooks = lessons_with_exercises(args.notebooks or None)
    except ValueError as e:
        ap.error(str(e))
    if args.what == "mark":
        for path in notebooks:
            changed = notebook_io.write(mark(notebook_io.read(path)), path)
            print(("marked " if changed else "unchanged ") + str(path))
    else:
        for path in release(Path(args.course), notebooks):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
