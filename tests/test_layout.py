"""The library's shape: small modules, functions that fit in a notebook cell, and one
place for every setting that makes the profiles differ."""
import ast
import pathlib
import re

import tutorlib

ROOT = pathlib.Path(tutorlib.__file__).parent
MODULE_LINES = 300          # "no module of tutorlib is over about 300 lines"
FUNCTION_LINES = 40         # "... and no function over about 40", docstrings and validation aside


def _sources():
    return sorted(ROOT.rglob("*.py"))


def _code_lines(fn: ast.FunctionDef) -> int:
    body = fn.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
        and isinstance(body[0].value.value, str)
    first = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
    return fn.end_lineno - first + 1


def test_every_module_is_small():
    big = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert not big, f"modules over {MODULE_LINES} lines: {big}"


def test_every_function_fits_in_a_notebook_cell():
    long = {}
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_check"):
                if (n := _code_lines(node)) > FUNCTION_LINES:
                    long[f"{p.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {FUNCTION_LINES} lines of code: {long}"


def test_profile_numbers_live_only_in_profiles():
    """No library module picks a per-profile number itself: ``settings()`` holds them."""
    picks = {str(p.relative_to(ROOT)): n for p in _sources() if p.name not in ("runtime.py", "profiles.py")
             and (n := len(re.findall(r"\bpick\(", p.read_text())))}
    assert not picks, f"pick(...) outside profiles.py: {picks}"


def test_no_private_name_is_imported_across_modules():
    bad = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                bad += [f"{p.relative_to(ROOT)}: {a.name}" for a in node.names
                        if a.name.startswith("_") and a.name not in ("_validate",)]
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in ("models", "losses", "world", "pretrained", "ops", "cache") \
                    and node.attr.startswith("_"):
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad, f"private helpers used across modules: {bad}"
