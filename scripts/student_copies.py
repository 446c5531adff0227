"""Write the student copies of the notebooks: every solution replaced by a stub.

    python -m scripts.student_copies                 # student/: a class repository, ready to push
    python -m scripts.student_copies --out DIR NB... # some notebooks' copies alone, in DIR

The default output is a repository a class can push and open on Binder or Colab:
``notebooks/`` (the copies), ``lessons/quizzes/`` (so each lesson's quiz link resolves as in the
course), ``binder/`` (PyTorch's CPU build and the course library from the course repository)
and a README. Each copy keeps the Colab set-up cell, which installs the course library.

In each code cell, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
``raise NotImplementedError(<the exercise's hint>)`` at the same indentation; everything
else (the ``tutorlib.course.check`` calls included) is kept, and outputs are cleared. The hint is
the exercise's own text: its title and its "Hint:" sentence (or its first sentences) from
the markdown cell above. The instructor notebooks are only read; running the command again
writes byte-identical copies.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

try:
    from scripts import notebook_io
except ImportError:                     # run as a file (python -m scripts.student_copies): its folder is on the path
    import notebook_io

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HEADING = re.compile(r"^#+\s*(Exercise\s+\d+[^\n]*)$", re.M)


def _plain(text: str) -> str:
    """Markdown to one plain line: no backticks, math dollars, LaTeX commands or emphasis
    (a ``*`` between spaces or inside code is a product and stays)."""
    text = re.sub(r"\\(?:dots|ldots)", "...", text)
    text = re.sub(r"\\[,;! ]", " ", text)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)
    parts = re.split(r"(`[^`]*`)", text)               # code spans kept as written
    parts = [p[1:-1] if p.startswith("`") else re.sub(r"\*+(?=\S)|(?<=\S)\*+", "", p) for p in parts]
    return re.sub(r"\s+", " ", "".join(parts).replace("$", "")).strip()


def _sentences(text: str, n: int = 2) -> str:
    return " ".join(re.split(r"(?<=[.!?])\s+", _plain(text))[:n])


def hint_of(markdown: str) -> str:
    """The exercise's title and hint from the markdown cell that introduces it: its
    first sentences after the heading, and its "Hint:" sentence."""
    heads = list(HEADING.finditer(markdown))
    if not heads:
        return "write this exercise (see the text above)"
    head = heads[-1]
    title = _plain(head.group(1))
    body = markdown[head.end():]
    m = re.search(r"Hint:\s*(.+?)(?:\n\s*\n|$)", body, re.S)
    if m:
        task = _sentences(body[:m.start()])
        return f"{title}. {task + ' ' if task else ''}Hint: {_plain(m.group(1))}"
    text = _sentences(body)
    return f"{title}. {text}" if text else f"{title} (see the text above)"


def stub_cell(source: str, hint: str) -> str:
    """``source`` with each solution block replaced by a ``NotImplementedError`` stub."""
    out, inside = [], False
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            if inside:
                raise ValueError(f"source: got {BEGIN!r} twice without {END!r} between")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE: replace the line below with your solution")
            out.append(f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})")
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"source: got {END!r} without {BEGIN!r} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"source: {BEGIN!r} is never closed by {END!r}")
    return "\n".join(out)


_BADGE_LINE = re.compile(r"^\[!\[(Open in Colab|Binder)\].*\n?", re.M)
STUDENT_NOTE = ("*Your copy of the lesson: open it from where your course hands it out (the course "
                "repository's Colab and Binder badges open the instructor's version).*\n")


def student_markdown(source: str) -> str:
    """A markdown cell for students: the Colab and Binder badges, which open the instructor's
    notebook in the course repository, become a note."""
    if not _BADGE_LINE.search(source):
        return source
    return _BADGE_LINE.sub("", _BADGE_LINE.sub(STUDENT_NOTE, source, count=1))


def hints(cells) -> dict[int, str]:
    """The hint of each cell that holds a solution, by its index: from the last markdown cell
    before it that opens an exercise (one heading, one exercise)."""
    found, markdown = {}, ""
    for k, cell in enumerate(cells):
        src = notebook_io.source(cell)
        if cell["cell_type"] == "markdown" and HEADING.search(src):
            markdown = src
        elif cell["cell_type"] == "code" and BEGIN in src:
            found[k], markdown = hint_of(markdown), ""
    return found


def student_notebook(nb: dict) -> dict:
    """A student copy of a notebook (as JSON): solutions stubbed, outputs cleared. nbgrader's
    generate_assignment writes the same stubs (grading/nbgrader_config.py calls ``stub_cell``)."""
    nb = json.loads(json.dumps(nb))                   # a deep copy: the input is left alone
    stubs = hints(nb["cells"])
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            cell["source"] = student_markdown(notebook_io.source(cell))
        if cell["cell_type"] == "code":
            src = notebook_io.source(cell)
            cell["source"] = stub_cell(src, stubs[k]) if k in stubs else src
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def write_copies(notebooks, out: Path) -> list[Path]:
    """Write the student copy of each notebook into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        path = Path(path)
        if path.suffix != ".ipynb" or not path.is_file():
            raise ValueError(f"notebooks: got {str(path)!r}, expected an existing .ipynb file")
        target = out / path.name
        notebook_io.write(student_notebook(notebook_io.read(path)), target)
        written.append(target)
    return written


STUDENT_README = """# {title}: your copies

The lessons of [{title}]({repo}) with the exercises left for you: each solution is a stub that
says what to write, and the check below it compares your function with the course library's.

- **Binder**: open this repository on mybinder.org (`binder/` installs PyTorch's CPU build and
  the course library); the lessons are in `notebooks/`.
- **Colab**: open a notebook from `notebooks/`; its first cell installs the course library.
- **Your laptop**: Python 3.10 or newer, then
  `python -m venv .venv`, `.venv/bin/pip install "tutorlib[lab] @ git+{repo}@{branch}"`
  (Windows: `.venv\\Scripts\\pip`), and `jupyter lab` in this folder.

Each lesson ends with a link to its self-check quiz, in `lessons/quizzes/`.
"""


def binder_requirements(repo: str, ref: str) -> str:
    """A class repository's ``binder/requirements.txt``: the course's pinned CPU build of
    PyTorch (as the course's own Binder has it), then the course library from ``repo`` at
    ``ref``, which brings everything else."""
    own = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    keep = [ln for ln in own if ln.startswith("--extra-index-url") or ln.startswith("torch==")]
    if len(keep) != 2:
        raise ValueError("binder/requirements.txt: expected an --extra-index-url line and a torch== pin")
    return ("# PyTorch's CPU build first (its +cpu version exists only on PyTorch's CPU index), then\n"
            "# the course library, which brings everything else it needs.\n"
            + "\n".join(keep) + f"\ntutorlib @ git+{repo}@{ref}\n")


def write_class_repository(out: Path, notebooks=None) -> list[Path]:
    """Write a class repository into ``out``: the student copies in ``notebooks/``, the quizzes
    in ``lessons/quizzes/``, ``binder/`` and a README. Returns the paths written."""
    try:
        from scripts import set_repository
    except ImportError:
        import set_repository
    repo, ref = set_repository.repository(), set_repository.branch()
    notebooks = notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    written = write_copies(notebooks, out / "notebooks")
    quizzes = out / "lessons" / "quizzes"
    quizzes.mkdir(parents=True, exist_ok=True)
    for quiz in sorted((ROOT / "lessons" / "quizzes").glob("*.md")):
        (quizzes / quiz.name).write_text(quiz.read_text())
        written.append(quizzes / quiz.name)
    (out / "binder").mkdir(exist_ok=True)
    files = {out / "binder" / "requirements.txt": binder_requirements(repo, ref),
             out / "binder" / "runtime.txt": (ROOT / "binder" / "runtime.txt").read_text(),
             out / "README.md": STUDENT_README.format(title="Cross-modal alignment, step by step",
                                                      repo=repo, branch=ref)}
    for path, text in files.items():
        path.write_text(text)
        written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to copy (default: every lesson, as a class repository)")
    ap.add_argument("--out", default=str(ROOT / "student"), help="folder to write (default: student/)")
    args = ap.parse_args(argv)
    if args.notebooks:
        written = write_copies(args.notebooks, Path(args.out))
    else:
        written = write_class_repository(Path(args.out))
    print(f"wrote {len(written)} files in {args.out}" + ("" if args.notebooks else
          ": a class repository (notebooks/, lessons/quizzes/, binder/, README.md), ready to push"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
