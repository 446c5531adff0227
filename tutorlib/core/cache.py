"""An on-disk cache for generated worlds, features and trained weights.

Where: ``TUTORLIB_CACHE`` if set, else ``$XDG_CACHE_HOME/tutorlib`` (``~/.cache/tutorlib``).
Every write goes to a temporary file in the same folder and is moved into place
with ``os.replace`` (atomic), under a per-entry file lock, so two notebooks running
at once never see half a file. Weights are safetensors, never pickles; an entry
that fails to load is deleted and rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def cache_dir() -> Path:
    """The cache folder (created if missing)."""
    root = os.environ.get("TUTORLIB_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "tutorlib"
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(*parts) -> str:
    """A short stable hash of JSON-able ``parts``: the cache key of a config."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _path(name: str) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name: got {name!r}, expected letters, digits, '.', '_' or '-' "
                         "(no folders)")
    return cache_dir() / name


@contextmanager
def lock(name: str, timeout: float = 600):
    """Hold the file lock of cache entry ``name`` (other processes wait)."""
    path = _path(name)
    with FileLock(str(path) + ".lock", timeout=timeout):
        yield path


def save_tensors(name: str, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as safetensors to entry ``name``, atomically."""
    if not isinstance(tensors, dict) or not tensors or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise ValueError("tensors: expected a non-empty dict of str -> torch.Tensor")
    path = _path(name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # clone: no shared memory
        clean = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
        save_file(clean, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_tensors(name: str) -> dict[str, torch.Tensor] | None:
    """Entry ``name`` as a dict of tensors, or ``None`` if missing or damaged.

    A damaged entry (truncated, not safetensors) is removed so that it gets rebuilt.
    """
    path = _path(name)
    if not path.exists():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        path.unlink(missing_ok=True)
        return None


def cached_tensors(name: str, build) -> dict[str, torch.Tensor]:
    """Load entry ``name``, or call ``build()`` (a dict of tensors), save and return it."""
    with lock(name):
        found = load_tensors(name)
        if found is not None:
            return found
        built = build()
        save_tensors(name, built)
        return built


def cached_folder(name: str, build) -> Path:
    """Entry ``name`` as a folder: if missing, ``build(tmp_folder)`` fills a temporary
    folder that is then renamed into place (atomic). A folder without the
    ``.complete`` marker is treated as damaged and rebuilt."""
    with lock(name) as path:
        if (path / ".complete").exists():
            return path
        if path.exists():
            shutil.rmtree(path)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            build(tmp)
            (tmp / ".complete").write_text("ok\n")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return path


def cached_module(name: str, empty, build, *, retrain: bool = False):
    """A trained module through the cache: lock entry ``name``, load it into ``empty()``
    (a new module of the right shape), or, if it is missing, damaged or stale (the
    weights do not fit), call ``build()`` -> ``(module, extras)``, save both and return them.

    ``extras`` is a dict of tensors stored beside the weights (a training history, test
    accuracies). Returns ``(module, extras)``; ``retrain=True`` always builds."""
    if not isinstance(retrain, bool):
        raise ValueError(f"retrain: got {retrain!r}, expected True or False")
    with lock(name):
        stored = None if retrain else load_tensors(name)
        if stored is not None:
            module = empty()
            try:
                module.load_state_dict({k[7:]: v for k, v in stored.items()
                                        if k.startswith("module.")})
                return module, {k[6:]: v for k, v in stored.items() if k.startswith("extra.")}
            except (RuntimeError, KeyError):
                pass                                    # stale or damaged: rebuild
        module, extras = build()
        tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
        tensors.update({f"extra.{k}": v for k, v in extras.items()})
        save_tensors(name, tensors)
        return module, extras
