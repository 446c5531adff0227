"""Device, profile and seeding: the three knobs every notebook turns first."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .profiles import PROFILES as _SETTINGS

PROFILES = tuple(_SETTINGS)          # "quick", "full": the names of tutorlib.profiles.PROFILES


def device() -> torch.device:
    """The best device here: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def profile() -> str:
    """``"quick"`` on a CPU, ``"full"`` on a GPU; ``TUTORLIB_PROFILE`` overrides.

    ``quick`` keeps every notebook near a minute on a 2-core laptop; ``full`` uses a
    larger world, wider towers and longer training with the same code.
    """
    forced = os.environ.get("TUTORLIB_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(
                f"TUTORLIB_PROFILE: got {forced!r}, expected one of {PROFILES}")
        return forced
    return "full" if device().type == "cuda" else "quick"


def settings():
    """The current profile's shared settings, a frozen ``tutorlib.profiles.Profile``:
    ``settings().image_size`` is 32 in ``quick`` and 64 in ``full``."""
    return _SETTINGS[profile()]


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
