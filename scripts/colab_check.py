"""Would installing the course on Colab change any package Colab preinstalls?

Colab's front end targets the packages it ships (ipywidgets 7, for one): a set-up cell that
upgrades or downgrades one of them can break widgets and progress bars, or force a restart.
This check resolves the course's requirements against Colab's published package list
(``tests/data/colab-pip-freeze.txt``), offline: each requirement that Colab already meets is
kept; one that Colab's version does not meet is a change (the failure); a package Colab lacks
will be installed, and its own requirements are followed in turn, read from its installed
metadata here.

    python -m scripts.colab_check            # exit 1 and a list if anything would change

The registry reachable here does not hold Colab's exact versions (numpy 2.1.3, for one), so
``pip install --dry-run`` against a constraints file cannot resolve; this walk asks the
question the constraints would, requirement by requirement.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

try:
    import tomllib
except ImportError:                          # Python 3.10
    import tomli as tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
FREEZE = ROOT / "tests" / "data" / "colab-pip-freeze.txt"
# Colab's interpreter and platform, for the requirements' markers
COLAB_ENV = {"python_version": "3.13", "python_full_version": "3.13.15", "sys_platform": "linux",
             "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
             "implementation_name": "cpython", "platform_python_implementation": "CPython",
             "extra": ""}


def colab_versions(path: Path = FREEZE) -> dict[str, Version]:
    """``{canonical name: version}`` of a ``pip freeze`` listing: ``name==version`` lines and
    ``name @ url`` lines whose wheel file name carries the version (others are skipped)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" in line:
            name, version = line.split("==", 1)
        elif " @ " in line:                    # a wheel or sdist URL: name-version[-tags].whl
            name, url = line.split(" @ ", 1)
            file = unquote(url.split("#")[0].rstrip("/").rsplit("/", 1)[-1])
            m = re.match(r"[^-]+-([^-]+?)(?:-.*)?(?:\.whl|\.tar\.gz|\.zip)$", file)
            if not m:
                continue                         # a git URL: no version to read
            version = m.group(1)
        else:
            continue
        try:
            out[canonicalize_name(name)] = Version(version)
        except InvalidVersion:
            continue
    return out


def course_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The requirements a plain ``pip install`` of the course brings (no extras)."""
    return tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]


def _requires(name: str) -> list[str] | None:
    try:
        return metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return None


def check(requirements: list[str], colab: dict[str, Version], requires=_requires) -> dict:
    """Walk ``requirements`` against ``colab``: ``{"changes": [...], "installs": [...],
    "unknown": [...]}``, each a list of sentences. ``requires(name)`` gives a package's own
    requirements (None: not known here)."""
    changes, installs, unknown, seen = [], [], [], set()
    todo = [(r, "the course") for r in requirements]
    while todo:
        text, why = todo.pop(0)
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(COLAB_ENV):
            continue
        name = canonicalize_name(req.name)
        if name in colab:
            if not req.specifier.contains(colab[name], prereleases=True):
                changes.append(f"{req.name}: Colab has {colab[name]}, {why} needs {req.specifier}")
            continue
        if name in seen:
            continue
        seen.add(name)
        installs.append(f"{req.name}{req.specifier} (for {why})")
        own = requires(req.name)
        if own is None:
            unknown.append(f"{req.name}: not installed here, so its own requirements are unknown")
            continue
        todo += [(r, req.name) for r in own]
    return {"changes": changes, "installs": installs, "unknown": unknown}


def main() -> int:
    colab = colab_versions()
    result = check(course_requirements(), colab)
    print(f"Colab's list: {FREEZE.relative_to(ROOT)} ({len(colab)} packages)")
    print("installed on top of Colab's packages: " + (", ".join(result["installs"]) or "nothing"))
    for line in result["unknown"]:
        print("unknown:", line)
    for line in result["changes"]:
        print("WOULD CHANGE:", line)
    if not result["changes"] and not result["unknown"]:
        print("no preinstalled package would be upgraded or downgraded")
    return 1 if result["changes"] or result["unknown"] else 0


if __name__ == "__main__":
    sys.exit(main())
