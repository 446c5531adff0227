"""The ways in: make on Linux and macOS, plain pip and Python anywhere (Windows too)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import test as test_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_names_the_fix_for_a_venv_of_an_old_python(tmp_path):
    """macOS's own python3 is 3.9: a .venv made with it must not end in pip's riddle."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.9.6";; -c) exit 1;; *) exit 3;; esac\n')
    fake.chmod(0o755)
    out = subprocess.run(["make", "-s", "install"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0
    assert "made with Python 3.9.6" in out.stdout and "rm -rf .venv && make install PYTHON=python3.11" in out.stdout
    assert not (tmp_path / ".venv" / ".installed").exists()


def test_the_test_command_is_one_python_command_that_make_calls():
    cmd, env = test_command.command()
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and "--rerun-notebooks" in cmd and cmd[-1] == "notebooks"
    assert env["TUTORLIB_PROFILE"] == "quick" and env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "1"
    unit, _ = test_command.command(unit=True)
    assert "not slow" in unit and "notebooks" not in unit
    with pytest.raises(ValueError, match="jobs: got 0"):
        test_command.command(jobs=0)
    once, once_env = test_command.command(notebooks_once=True)       # make notebooks: the same options, each cell once
    assert once[-1] == "notebooks" and "--rerun-notebooks" not in once and "tests" not in once
    assert set(test_command.NBVAL) - set(once) == {"--rerun-notebooks"} and once_env == test_command.ENV
    makefile = (ROOT / "Makefile").read_text()
    assert all(f"-m scripts.test {flag}" in makefile for flag in ("--jobs", "--unit", "--notebooks"))
    assert "--nbval" not in makefile, "the nbval options live in scripts/test.py alone"
    # the README's plain route and CI run the same command, without make
    readme = (ROOT / "README.md").read_text()
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "python -m scripts.test" in readme and any("-m scripts.test" in ln for ln in ci)
    assert not any("make" in ln.split("#")[0].split() for ln in ci), "CI follows the plain route, without make"


def test_readme_plain_route_installs_from_the_project_s_own_files():
    readme = (ROOT / "README.md").read_text()
    for step in ('pip install -e ".[lab]"', "jupyter lab", ".venv\\Scripts\\", "python -m scripts.test"):
        assert step in readme, step
