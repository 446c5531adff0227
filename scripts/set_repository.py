"""Write the repository's address (from pyproject.toml) into every notebook.

    python -m scripts.set_repository          # rewrite the Colab set-up cells and badges
    python -m scripts.set_repository --check  # exit 1 if any notebook disagrees

``[project.urls] Repository`` in ``pyproject.toml`` is the one place that holds the
address. Each notebook's first code cell (the Colab set-up cell, which installs the
package on Colab only) and the Colab and Binder badges in its first markdown cell are
generated from it, so a fork changes one line and runs this script.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    from scripts import notebook_io
except ImportError:                     # run as a file (python -m scripts.set_repository): its folder is on the path
    import notebook_io

ROOT = Path(__file__).resolve().parent.parent
SETUP = ('# Setup: on Colab this installs the course library; anywhere else it does nothing.\n'
         'import sys, subprocess; "google.colab" in sys.modules and subprocess.run('
         '[sys.executable, "-m", "pip", "install", "-q", "tutorlib @ git+{repo}"], check=True)')
_BADGES = re.compile(r"\[!\[Open in Colab\].*?\n\[!\[Binder\][^\n]*", re.S)


def repository() -> str:
    """``https://github.com/OWNER/NAME`` from ``pyproject.toml``."""
    m = re.search(r'^Repository\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if m is None:                     # a regex, not tomllib: the course supports Python 3.10
        raise ValueError("pyproject.toml: expected a Repository = \"https://github.com/...\" line under [project.urls]")
    repo = m.group(1).rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"Repository: got {repo!r}, expected https://github.com/OWNER/NAME")
    return repo


def setup_cell(repo: str) -> str:
    return SETUP.format(repo=repo)


def badges(repo: str, name: str) -> str:
    slug = repo.removeprefix("https://github.com/")
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name})\n"
            f"[![Binder](https://mybinder.org/badge_logo.svg)]"
            f"(https://mybinder.org/v2/gh/{slug}/main?urlpath=lab/tree/notebooks/{name})")


def updated(nb, name: str, repo: str):
    """The notebook (as ``nbformat.read`` gives it: each cell's source one string) with its
    set-up cell and badges generated from ``repo``."""
    code = next(c for c in nb.cells if c.cell_type == "code")
    if "google.colab" not in code.source:
        raise ValueError(f"{name}: its first code cell is not the Colab set-up cell")
    code.source = setup_cell(repo)
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    text = md.source
    if not _BADGES.search(text):
        raise ValueError(f"{name}: its first markdown cell has no Colab and Binder badges")
    md.source = _BADGES.sub(lambda m: badges(repo, name), text, count=1)
    return nb


def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    repo, stale = repository(), []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = notebook_io.read(path)
        before = [c.source for c in nb.cells]
        nb = updated(nb, path.name, repo)
        if [c.source for c in nb.cells] != before:
            stale.append(path.name)
            if not check:
                notebook_io.write(nb, path)
    if check and stale:
        print(f"notebooks whose set-up cell or badges do not use {repo}: {stale}; "
              "run python -m scripts.set_repository")
        return 1
    print(f"{'checked' if check else 'wrote'} the address {repo} in every notebook"
          + (f" (updated {stale})" if stale and not check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
