"""The JupyterLab settings the course installs: no news pop-up, other overrides kept."""
import json
from pathlib import Path

from scripts import lab_settings


def test_overrides_turn_news_off_and_keep_what_was_there(tmp_path):
    path = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    assert lab_settings.write(tmp_path) == path
    got = json.loads(path.read_text())
    assert got["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert got["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    lab_settings.write(tmp_path)                                   # idempotent
    assert json.loads(path.read_text()) == got


def test_make_install_and_binder_install_them():
    root = Path(__file__).resolve().parent.parent
    assert "scripts.lab_settings" in (root / "Makefile").read_text()
    assert "scripts.lab_settings" in (root / "binder" / "postBuild").read_text()
