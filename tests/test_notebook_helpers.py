"""Notebooks carry lessons, not plumbing: a helper a lesson defines in a cell (a top-level
function or class outside an exercise, its check and a paper card) lives in one notebook only,
and the course's helper code stays at most two thirds of what it was before the library took
the plumbing over (530 lines in December 2026)."""
import ast
import collections

from scripts import notebook_io
from test_notebooks_clean import NOTEBOOKS

HELPER_LINES_BEFORE = 530          # measured on the course before the move, the same way


def _helpers(path) -> dict[str, int]:
    """Top-level defs and classes in a notebook's plain code cells: name -> lines."""
    found = {}
    for src in notebook_io.code_sources(notebook_io.read(path)):
        if "### BEGIN SOLUTION" in src or "cards." in src:
            continue                 # an exercise, or a paper card: the lesson itself
        code = "\n".join(ln for ln in src.split("\n") if not ln.lstrip().startswith(("%", "!")))
        for node in ast.parse(code).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                found[node.name] = found.get(node.name, 0) + node.end_lineno - node.lineno + 1
    return found


def test_no_helper_is_defined_in_two_notebooks():
    where = collections.defaultdict(list)
    for path in NOTEBOOKS:
        for name in _helpers(path):
            where[name].append(path.name[:2])
    twice = {name: nbs for name, nbs in where.items() if len(nbs) > 1}
    assert not twice, (f"helpers defined in more than one notebook: {twice}; give them one home "
                       "in tutorlib (or names of their own)")


def test_helper_code_stays_under_two_thirds_of_what_it_was():
    lines = {path.name[:2]: sum(_helpers(path).values()) for path in NOTEBOOKS}
    assert sum(lines.values()) <= 2 * HELPER_LINES_BEFORE / 3, (
        f"helper lines defined in notebook cells: {lines} (total {sum(lines.values())}); "
        "plumbing belongs in tutorlib")
