"""A plain (non-editable) install, as the Colab set-up cell does, gets every subpackage."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tutorlib

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_module_of_the_library(tmp_path):
    pytest.importorskip("setuptools", minversion="64")
    src = tmp_path / "src"                      # a copy: the build leaves nothing in the checkout
    shutil.copytree(ROOT / "tutorlib", src / "tutorlib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("tutorlib-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    here = Path(tutorlib.__file__).parent
    modules = {f"tutorlib/{p.relative_to(here).as_posix()}" for p in here.rglob("*.py")}
    assert modules and not modules - names, f"missing from the wheel: {sorted(modules - names)}"


def test_licences_and_citation_are_there_and_agree():
    import tomllib
    import yaml
    root = ROOT
    assert (root / "LICENSE").read_text().startswith("MIT License")
    text = (root / "LICENSE-TEXT.md").read_text()
    assert "CC BY 4.0" in text and "MIT" in text
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["license"]["text"]
    cff = (root / "CITATION.cff").read_text()
    meta = yaml.safe_load(cff)
    assert declared == "MIT" and meta["license"] == "MIT" and meta["cff-version"] == "1.2.0"
    assert meta["title"] and meta["authors"] and meta["version"] == tutorlib.__version__
    readme = (root / "README.md").read_text()
    assert "LICENSE-TEXT.md" in readme and "CITATION.cff" in readme
