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
