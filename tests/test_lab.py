"""Launching the course: JupyterLab as the README starts it, Colab's set-up cell, Binder."""
import json
import os
import shutil
import subprocess
import sys
import types
import urllib.error
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
from conftest import get  # noqa: E402
from scripts import set_repository  # noqa: E402


@pytest.mark.slow
def test_jupyterlab_from_make_lab_serves_every_notebook(lab):
    base, token = lab
    status, body = get(f"{base}/api/contents?token={token}")
    listed = {item["name"]: item["type"] for item in json.loads(body)["content"]}
    assert status == 200 and all(listed.get(name) == "notebook" for name in NOTEBOOKS), listed
    for name in NOTEBOOKS:
        status, body = get(f"{base}/api/contents/{name}?token={token}")
        nb = json.loads(body)
        assert status == 200 and nb["type"] == "notebook" and nb["content"]["cells"]
        status, page = get(f"{base}/lab/tree/{name}?token={token}")
        assert status == 200 and b"JupyterLab" in page
    with pytest.raises(urllib.error.HTTPError):          # and nothing without the token
        get(f"{base}/api/contents")


def test_repository_address_lives_in_one_place():
    repo = set_repository.repository()
    assert set_repository.main(["--check"]) == 0, "run python -m scripts.set_repository"
    import nbformat
    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code.source == set_repository.setup_cell(repo)
        assert set_repository.badges(repo, name) in nb.cells[0].source
    for doc in ("README.md", "lessons/README.md"):         # no second copy of the address to drift
        assert "github.com/tutorlib" not in (ROOT / doc).read_text()


@pytest.mark.parametrize("on_colab", [False, True])
def test_colab_setup_cell_installs_only_on_colab(monkeypatch, on_colab):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: calls.append(a[0]))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(set_repository.setup_cell(set_repository.repository()), {})
    if on_colab:
        assert len(calls) == 1 and calls[0][-1] == f"tutorlib @ git+{set_repository.repository()}"
    else:
        assert calls == []


def test_binder_requirements_are_the_package_s_with_cpu_torch():
    import tomllib
    from packaging.requirements import Requirement
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    reqs = {Requirement(ln).name: str(Requirement(ln).specifier) for ln in lines if not ln.startswith("-")}
    declared = {Requirement(r).name: str(Requirement(r).specifier)
                for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    torch_pin = reqs.pop("torch")                         # "+cpu": only PyTorch's CPU index has it
    assert torch_pin.startswith("==") and torch_pin.endswith("+cpu"), torch_pin
    assert Requirement(f"torch{declared.pop('torch')}").specifier.contains(torch_pin[2:])
    assert reqs == declared, "binder/requirements.txt and pyproject.toml's dependencies differ"


def test_binder_postbuild_installs_only_the_course_library():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "binder" / "postBuild")]).returncode == 0
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)
    lines = [ln for ln in post.splitlines() if "pip install" in ln and not ln.lstrip().startswith("#")]
    assert len(lines) == 1 and lines[0].rstrip().endswith("--no-deps -e ."), lines
    assert (ROOT / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")


def test_binder_image_installs_the_requirements_before_it_copies_the_repository(tmp_path):
    """repo2docker's own Dockerfile (printed without Docker): the requirements layer comes
    before the repository's files, so a commit that changes a notebook reuses it."""
    shutil.copytree(ROOT / "binder", tmp_path / "repo" / "binder")
    exe = Path(sys.executable).parent / "jupyter-repo2docker"
    out = subprocess.run([str(exe), "--no-build", "--debug", str(tmp_path / "repo")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    steps = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith(("RUN", "COPY"))]
    where = lambda text: next(k for k, ln in enumerate(steps) if text in ln)     # noqa: E731
    assert where('-r "binder/requirements.txt"') < where("COPY --chown=0:0 src/ ${REPO_DIR}/") \
        < where("./binder/postBuild"), steps