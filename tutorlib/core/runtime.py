"""Device, profile and seeding: the three knobs every notebook turns first."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from .profiles import PROFILES          # {"quick": QUICK, "full": FULL}: one name for one thing


DEVICES = ("cpu", "cuda", "mps")
_TOLD: set = set()                      # messages said once per process


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def device() -> torch.device:
    """The device the course runs on: ``TUTORLIB_DEVICE`` (``cpu``, ``cuda`` or ``mps``) if
    set, else CUDA if there is one, else the CPU. Apple's MPS is used only when asked for:
    no test of the course has run on it, so on a Mac with MPS the first call says so once and
    how to opt in (``TUTORLIB_DEVICE=mps`` before importing)."""
    forced = os.environ.get("TUTORLIB_DEVICE", "").strip().lower()
    if forced:
        if forced not in DEVICES:
            raise ValueError(f"TUTORLIB_DEVICE: got {forced!r}, expected one of {DEVICES}")
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
        if not available[forced]:
            raise RuntimeError(f"TUTORLIB_DEVICE: got {forced!r}, but this machine has no "
                               f"{forced.upper()} device; unset it or choose 'cpu'")
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available() and "mps" not in _TOLD:
        _TOLD.add("mps")
        print("tutorlib: using the CPU although Apple's MPS is available (the course is "
              "untested on MPS); set TUTORLIB_DEVICE=mps before importing to try it",
              file=sys.stderr)
    return torch.device("cpu")


# `full` on a GPU only when its memory and the host's can hold the largest lesson:
# lesson 02 in `full` peaked at 19.3 GB of GPU memory and 10.5 GB of host memory
# (a free Colab T4: about 15 GB and 12 GB)
FULL_MIN_GPU_GIB, FULL_MIN_HOST_GIB = 24.0, 16.0


def _host_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):      # not a POSIX system: do not hold it back
        return float("inf")


def _auto_profile(dev: torch.device) -> tuple[str, str]:
    """The profile a machine whose best device is ``dev`` can hold, and why."""
    if dev.type != "cuda":
        return "quick", "no CUDA GPU"
    props = torch.cuda.get_device_properties(0)
    gpu, host = props.total_memory / 2**30, _host_gib()
    if gpu >= FULL_MIN_GPU_GIB and host >= FULL_MIN_HOST_GIB:
        return "full", f"{props.name} with {gpu:.0f} GiB, host {host:.0f} GiB"
    return "quick", (f"{props.name} with {gpu:.0f} GiB, host {host:.0f} GiB: "
                     f"`full` needs {FULL_MIN_GPU_GIB:.0f} GiB on the GPU "
                     f"and {FULL_MIN_HOST_GIB:.0f} GiB on the host (lesson 02's peak)")


def profile() -> str:
    """``"quick"`` on a CPU, ``"full"`` on a GPU with the memory for it;
    ``TUTORLIB_PROFILE`` overrides.

    ``quick`` keeps every notebook near a minute on a 2-core laptop; ``full`` uses a
    larger world, wider towers and longer training with the same code. On a GPU below
    ``FULL_MIN_GPU_GIB`` (or a host below ``FULL_MIN_HOST_GIB``) the course stays ``quick``.
    On a GPU, the first call says which profile it picked, why, and how to change it.
    """
    forced = os.environ.get("TUTORLIB_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(
                f"TUTORLIB_PROFILE: got {forced!r}, expected one of {tuple(PROFILES)}")
        return forced
    dev = device()
    name, why = _auto_profile(dev)
    if dev.type == "cuda" and (name, why) not in _TOLD:
        _TOLD.add((name, why))
        other = "quick" if name == "full" else "full"
        print(f"tutorlib: profile {name!r} ({why}); "
              f"set TUTORLIB_PROFILE={other} before importing to change it",
              file=sys.stderr)
    return name


def settings():
    """The current profile's shared settings, a frozen ``tutorlib.core.profiles.Profile``:
    ``settings().image_size`` is 32 in ``quick`` and 64 in ``full``."""
    return PROFILES[profile()]


def pick(quick, full):
    """The value for the current profile: ``pick(quick=..., full=...)``. For a lesson's own
    choices; the settings the library shares live in ``settings()``."""
    return quick if profile() == "quick" else full


def get_seed(seed: int | None = None) -> int:
    """``seed`` if given, else ``TUTORLIB_SEED`` from the environment, else 0."""
    if seed is None:
        raw = os.environ.get("TUTORLIB_SEED", "0").strip() or "0"
        try:
            seed = int(raw)
        except ValueError:
            raise ValueError(f"TUTORLIB_SEED: got {raw!r}, expected an integer") from None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: got {seed!r}, expected a non-negative integer or None")
    return int(seed)


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA); return the seed used.

    ``seed=None`` reads ``TUTORLIB_SEED`` (default 0), so one environment variable
    reruns a whole lesson under another seed.
    """
    seed = get_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed
