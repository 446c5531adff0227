"""JupyterLab settings the course installs with its environment: no news pop-up on the first
launch (JupyterLab 4 asks whether to fetch news from jupyter.org, which a class does not need
and an offline machine cannot answer).

    python -m scripts.lab_settings            # into this Python's prefix (a venv, Binder's env)
    python -m scripts.lab_settings --prefix P

Writes ``P/share/jupyter/lab/settings/overrides.json``, keeping any other overrides there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def write(prefix: Path) -> Path:
    path = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    for plugin, settings in OVERRIDES.items():
        current.setdefault(plugin, {}).update(settings)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(current, f, indent=2)
    os.replace(tmp, path)                      # atomic: a half-written file is never read
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default=sys.prefix)
    print(f"wrote {write(Path(ap.parse_args().prefix))}")
