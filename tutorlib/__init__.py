"""tutorlib: the helper library of the cross-modal alignment course.

Small modules, one idea each: ``world`` (the data), ``models`` (the towers),
``losses``, ``metrics``, ``train``, ``plots``, ``check``, and one module per
method lesson. Heavy libraries (transformers, datasets) load only when used.
"""
from importlib import import_module

from ._core import device, get_seed, pick, profile, seed_everything, settings

__version__ = "0.1.0"
__all__ = ["device", "profile", "settings", "seed_everything", "pick", "get_seed", "profiles", "cache", "world",
           "models", "losses", "metrics", "train", "plots", "check", "cards"]

_SUBMODULES = {"profiles", "ops", "cache", "world", "models", "losses", "metrics", "train", "plots", "check",
               "mixup", "prompts", "restore", "inversion", "progressive", "costs", "binding", "finegrained", "grounding", "representations", "structure", "selfsup", "fewpairs", "launch", "distributed", "pretrained", "unimodal", "minilm", "cards"}


def __getattr__(name):
    if name in _SUBMODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'tutorlib' has no attribute {name!r}")
