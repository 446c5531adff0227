"""The trained-once models of the default profile and seed, shipped inside the package.

The course mini-CLIP, lesson 05's three unimodal backbones and lesson 08's SimCLR encoder,
trained in the ``quick`` profile under seed 0 at one thread, sit in ``tutorlib/shipped/`` as
the safetensors files the cache would hold, under the same names. On import, ``install()``
copies each one the cache lacks into it, so a fresh Colab or Binder session loads them instead
of training them, and every student starts from the same models as the guides, on any machine
and thread count.

A model is found by its cache entry's name, and the name holds its recipe's key (the settings,
the inputs and the code that build it: ``core.recipes``). A shipped file whose recipe or code
has changed since it was trained has a name the current code never asks for, so it is never
used, and the model trains as before; another seed or profile trains as before too.
``python -m scripts.ship_models`` (``make models``) retrains them from an empty cache, and
``tests/test_shipped.py`` fails while a shipped file's name is not the one its recipe derives.
``TUTORLIB_SHIPPED=0`` turns the copying off (a cold start that trains everything).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import cache

FOLDER = Path(__file__).resolve().parent.parent / "shipped"


def files() -> list[Path]:
    """The shipped models, by name."""
    return sorted(FOLDER.glob("*.safetensors"))


def enabled() -> bool:
    """False when ``TUTORLIB_SHIPPED`` is ``0`` (or ``false``, ``no``, ``off``)."""
    value = os.environ.get("TUTORLIB_SHIPPED", "1").strip().lower()
    if value not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"TUTORLIB_SHIPPED: got {value!r}, expected 1 or 0")
    return value not in ("0", "false", "no", "off")


def install(folder: str | Path | None = None) -> list[str]:
    """Copy every shipped model that cache ``folder`` (default: ``cache.cache_dir()``) lacks
    into it, each through a temporary file moved into place (atomic); an entry already there
    is left as it is. Returns the names copied. A copy that fails (a read-only disk) is
    reported on stderr and skipped: that model then trains on first use, as without it."""
    if folder is not None and not isinstance(folder, (str, Path)):
        raise ValueError(f"folder: got {type(folder).__name__}, expected a path or None")
    copied = []
    try:
        target = cache.cache_dir() if folder is None else Path(folder)
    except OSError as err:                       # no writable cache folder: nothing to copy into
        print(f"tutorlib: no cache folder for the shipped models ({err}); they will be trained on "
              "first use", file=sys.stderr)
        return copied
    for src in files():
        dst = target / src.name
        if dst.exists():
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{src.name}.", suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            copied.append(src.name)
        except OSError as err:
            print(f"tutorlib: could not copy the shipped {src.name} into {target} ({err}); "
                  "it will be trained on first use", file=sys.stderr)
    return copied
