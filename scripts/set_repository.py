"""Write the repository's address and branch into every place that carries them.

    python -m scripts.set_repository                                  # regenerate every place from pyproject.toml
    python -m scripts.set_repository https://github.com/ME/FORK        # a new address: pyproject.toml, then every place
    python -m scripts.set_repository --from-git                       # the address of `git remote get-url origin`
    python -m scripts.set_repository --branch teaching-2027           # the branch the badges and Colab install from
    python -m scripts.set_repository --check                          # exit 1 if any place disagrees

``[project.urls] Repository`` and ``[tool.course] branch`` in ``pyproject.toml`` are the one
place that holds them. Generated from them: each notebook's first code cell (the Colab set-up
cell, which installs the package on Colab only) and the Colab and Binder badges in its first
markdown cell (with ``KERNEL_NOTE`` under them); the badges at the top of the README; ``repository-code`` in ``CITATION.cff``.
The course site and the student copies read them from here.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

try:
    from scripts import notebook_io
except ImportError:                     # run as a file (python -m scripts.set_repository): its folder is on the path
    import notebook_io

ROOT = Path(__file__).resolve().parent.parent
# On Colab: install the course library (not on a rerun), and say in one line what changed
SETUP = '''# Setup: on Colab this installs the course library and says what it changed; anywhere else it does nothing.
import sys, subprocess, importlib.util, importlib.metadata as md
if "google.colab" in sys.modules and importlib.util.find_spec("tutorlib") is None:
    had = {{d.metadata["Name"].lower(): d.version for d in md.distributions()}}
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tutorlib @ git+{repo}@{branch}"], check=True)
    now = {{d.metadata["Name"].lower(): d.version for d in md.distributions()}}
    changed = sorted(n for n in had if now.get(n, had[n]) != had[n])
    print(f"installed {{', '.join(sorted(set(now) - set(had))) or 'nothing new'}}; " + (
        f"changed {{', '.join(changed)}}: restart the session (Runtime > Restart session)" if changed
        else "every package Colab had is untouched: no restart needed"))'''
_BADGES = re.compile(r"\[!\[Open in Colab\].*?\n\[!\[Binder\][^\n]*", re.S)
# under each notebook's badges: on Binder every open kernel counts against one memory limit
KERNEL_NOTE = ("*Before you start: shut down the previous lesson's kernel (Kernel > Shut Down Kernel). "
               "On Binder every open kernel counts against the session's 2 GB.*")
_NOTEBOOK_BADGES = re.compile(_BADGES.pattern + r"(?:\n\n?" + re.escape(KERNEL_NOTE) + ")?", re.S)
_REPO_LINE = re.compile(r'^Repository\s*=\s*"([^"]*)"', re.M)
_BRANCH_LINE = re.compile(r'^branch\s*=\s*"([^"]*)"', re.M)
_CFF_LINE = re.compile(r'^repository-code:\s*"[^"]*"', re.M)


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def _checked(repo: str) -> str:
    repo = repo.rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"Repository: got {repo!r}, expected https://github.com/OWNER/NAME")
    return repo


def repository() -> str:
    """``https://github.com/OWNER/NAME`` from ``pyproject.toml``."""
    m = _REPO_LINE.search(_pyproject())
    if m is None:                     # a regex, not tomllib: the course supports Python 3.10
        raise ValueError("pyproject.toml: expected a Repository = \"https://github.com/...\" line under [project.urls]")
    return _checked(m.group(1))


def branch() -> str:
    """The branch the badges open and Colab installs from (``[tool.course] branch``)."""
    m = _BRANCH_LINE.search(_pyproject())
    if m is None:
        raise ValueError('pyproject.toml: expected a branch = "main" line under [tool.course]')
    if not re.fullmatch(r"[\w./-]+", m.group(1)):
        raise ValueError(f"branch: got {m.group(1)!r}, expected a git branch name")
    return m.group(1)


def from_git(remote: str = "origin") -> str:
    """The https address of a git remote (``git@github.com:O/N.git`` becomes ``https://github.com/O/N``)."""
    url = subprocess.run(["git", "remote", "get-url", remote], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    if not url:
        raise ValueError(f"remote: git has no remote {remote!r} here")
    url = re.sub(r"^git@github\.com:", "https://github.com/", url)
    return _checked(re.sub(r"\.git$", "", url))


def setup_cell(repo: str, ref: str | None = None) -> str:
    return SETUP.format(repo=repo, branch=ref or branch())


def badges(repo: str, name: str, ref: str | None = None) -> str:
    """The Colab and Binder badges of notebook ``name`` (``None``: the README's, which open the
    first lesson on Colab and the course's folder on Binder)."""
    slug, ref = repo.removeprefix("https://github.com/"), ref or branch()
    colab = f"blob/{ref}/notebooks/{name or '00_the_world.ipynb'}"
    binder = f"lab/tree/notebooks/{name}" if name else "lab/tree/notebooks"
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{slug}/{colab})\n"
            f"[![Binder](https://mybinder.org/badge_logo.svg)]"
            f"(https://mybinder.org/v2/gh/{slug}/{ref}?urlpath={binder})")


def updated(nb, name: str, repo: str, ref: str | None = None):
    """The notebook (as ``nbformat.read`` gives it: each cell's source one string) with its
    set-up cell and badges generated from ``repo`` and ``ref``."""
    code = next(c for c in nb.cells if c.cell_type == "code")
    if "google.colab" not in code.source:
        raise ValueError(f"{name}: its first code cell is not the Colab set-up cell")
    code.source = setup_cell(repo, ref)
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    if not _BADGES.search(md.source):
        raise ValueError(f"{name}: its first markdown cell has no Colab and Binder badges")
    md.source = _NOTEBOOK_BADGES.sub(lambda m: badges(repo, name, ref) + "\n\n" + KERNEL_NOTE, md.source, count=1)
    return nb


def _text_places(repo: str, ref: str) -> dict[Path, str]:
    """README.md and CITATION.cff as they should read."""
    readme, cff = ROOT / "README.md", ROOT / "CITATION.cff"
    text = readme.read_text()
    if not _BADGES.search(text):
        raise ValueError("README.md: expected the Colab and Binder badges near its top")
    citation = cff.read_text()
    if not _CFF_LINE.search(citation):
        raise ValueError('CITATION.cff: expected a repository-code: "..." line')
    return {readme: _BADGES.sub(lambda m: badges(repo, None, ref), text, count=1),
            cff: _CFF_LINE.sub(f'repository-code: "{repo}"', citation, count=1)}


def _set_pyproject(repo: str | None, ref: str | None) -> None:
    text = _pyproject()
    if repo is not None:
        text = _REPO_LINE.sub(f'Repository = "{_checked(repo)}"', text, count=1)
    if ref is not None:
        if not re.fullmatch(r"[\w./-]+", ref):
            raise ValueError(f"branch: got {ref!r}, expected a git branch name")
        text = _BRANCH_LINE.sub(f'branch = "{ref}"', text, count=1)
    (ROOT / "pyproject.toml").write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", help="https://github.com/OWNER/NAME (default: pyproject.toml's)")
    parser.add_argument("--from-git", action="store_true", help="take the address from `git remote get-url origin`")
    parser.add_argument("--branch", help="the branch badges open and Colab installs from")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any place disagrees")
    args = parser.parse_args(argv)
    new = from_git() if args.from_git else args.address
    if (new or args.branch) and not args.check:
        _set_pyproject(new, args.branch)
    repo, ref, stale = repository(), branch(), []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = notebook_io.read(path)
        before = [c.source for c in nb.cells]
        nb = updated(nb, path.name, repo, ref)
        if [c.source for c in nb.cells] != before:
            stale.append(path.name)
            if not args.check:
                notebook_io.write(nb, path)
    for path, text in _text_places(repo, ref).items():
        if path.read_text() != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"places that do not use {repo} at {ref}: {stale}; run python -m scripts.set_repository")
        return 1
    print(f"{'checked' if args.check else 'wrote'} the address {repo} and branch {ref} everywhere"
          + (f" (updated {stale})" if stale and not args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
