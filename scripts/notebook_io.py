"""Reading and writing the course's notebooks: the one way every script does it.

A notebook is JSON (nbformat 4). ``read`` gives it as ``nbformat`` nodes, each cell's source
one string (what nbclient, nbconvert and nbgrader take), or, on a machine without the Jupyter
stack (``run_cells`` on a GPU box), as plain dicts of the same shape. ``write`` writes the
repository's format (one-space indent, sorted keys, sources as lists of lines) atomically, and
only when the text changes.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def source(cell) -> str:
    """A cell's source as one string (a notebook on disk may hold it as a list of lines)."""
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def read(path):
    """The notebook at ``path``: nbformat nodes if nbformat is installed, plain dicts if not."""
    path = Path(path)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValueError(f"path: got {str(path)!r}, expected an existing .ipynb file")
    try:
        import nbformat
    except ImportError:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            cell["source"] = source(cell)
        return nb
    return nbformat.read(str(path), as_version=4)


def dumps(nb) -> str:
    """The notebook as the repository stores it."""
    try:
        import nbformat
    except ImportError:
        nb = json.loads(json.dumps(nb))
        for cell in nb["cells"]:
            cell["source"] = source(cell).splitlines(keepends=True)
        return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return nbformat.writes(nbformat.from_dict(nb)) + "\n"


def write(nb, path) -> bool:
    """Write ``nb`` to ``path`` atomically if its text changed; return whether it did."""
    path, text = Path(path), dumps(nb)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return True


def code_sources(nb) -> list[str]:
    """The source of every code cell, in order."""
    return [source(c) for c in nb["cells"] if c["cell_type"] == "code"]
