"""Every lesson has a self-check quiz beside it (lessons/quizzes/NN_topic.md): 5 to 8 numbered
questions, each with a folded answer that gives a short answer in bold and a line of why, and
the notebook links to it at its end."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_lesson_has_a_quiz_with_answers(path):
    quiz = ROOT / "lessons" / "quizzes" / f"{path.stem}.md"
    assert quiz.exists(), f"no quiz for {path.name}: expected {quiz.relative_to(ROOT)}"
    text = quiz.read_text()
    questions = re.split(r"^\d+\. ", text, flags=re.M)[1:]
    assert 5 <= len(questions) <= 8, f"{quiz.name}: {len(questions)} questions, expected 5 to 8"
    for k, q in enumerate(questions, 1):
        answer = re.search(r"<details><summary>Answer</summary>\s*\*\*(.+?)\*\*\s*(.+?)\s*</details>", q, re.S)
        assert answer and answer.group(1).strip() and len(answer.group(2).strip()) > 10, \
            f"{quiz.name}, question {k}: expected a folded answer with a bold short answer and a why"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_links_its_quiz(path):
    nb = nbformat.read(path, as_version=4)
    link = f"../lessons/quizzes/{path.stem}.md"
    assert any(link in c.source for c in nb.cells if c.cell_type == "markdown"), f"{path.name} does not link {link}"
