"""tutorlib: the helper library of the cross-modal alignment course.

Small modules, one idea each, in folders that are the library's floors (each imports only
from the floors below it):

    core/         profiles, the runtime (device, profile, seeds), the thread cap, checks of inputs, tensor
                  helpers, the cache and the recipes that key it
    world/        the procedural world: scenes, images, sounds, videos, captions, datasets
    models/       the towers and the protocol the methods reach through (and a Hugging Face
                  CLIP behind it)
    objectives/   losses: CLIP's, mixup's, CWCL's, STRUCTURE's, GRAM's and ImageBind's,
                  FILIP's, and the distributed forms
    evaluation/   retrieval and zero-shot metrics, representation similarity, grounding
    training/     the one training loop, costs, launching processes
    zoo/          the trained-once models: the course mini-CLIP, the unimodal backbones,
                  the SimCLR image encoder, MiniLM
    methods/      one kit per method lesson: prompts (CoOp) and base_to_novel, restore,
                  inversion, progressive (OneEncoder) and stages, fewpairs
    course/       exercise checks, paper cards, figures

``tutorlib.device()``, ``profile()``, ``settings()``, ``seed_everything()``, ``pick`` and
``get_seed()`` are here; every module is imported from its floor, e.g.
``from tutorlib.objectives import losses``. Heavy libraries (transformers, datasets) load
only when used.
"""
from importlib import import_module

from .core.runtime import device, get_seed, pick, profile, seed_everything, settings
from .core.threads import cap_threads
from .core import shipped

cap_threads()           # torch's threads, at most the CPUs this process may use (Binder: one)
if shipped.enabled():
    shipped.install()   # the default seed's trained-once models into the cache, where it lacks them

__version__ = "0.1.0"
_FLOORS = ("core", "world", "models", "objectives", "evaluation", "training", "zoo", "methods",
           "course")
__all__ = ["device", "profile", "settings", "seed_everything", "pick", "get_seed", *_FLOORS]


def __getattr__(name):
    if name in _FLOORS:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'tutorlib' has no attribute {name!r}")
