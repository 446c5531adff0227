"""The data a CLIP batch needs: images, token ids of full and partial captions, and the
soft targets that say which scene satisfies which caption."""
from __future__ import annotations

import torch

from ...core import _validate
from ... import world
from ...core.runtime import get_seed, settings


MODALITIES = ("image", "text")


def training_config(split: str = "train", n: int | None = None, seed: int = 0) -> dict:
    """The world config ``training_data(split, n, seed)`` loads (and the cached mini-CLIP's
    key reads), without building it."""
    return world.world_config(split, world.default_size(split) if n is None else n,
                              MODALITIES, seed)


def training_data(split: str = "train", n: int | None = None, seed: int = 0) -> dict:
    """Everything a CLIP batch needs, as tensors: ``image`` uint8 ``[N, 3, H, W]``, token
    ids of the full and partial captions ``[N, L]``, their specs ``[N, 9]`` and the scene
    attributes ``[N, 2, 4]`` (for ``world.matches``), and the ``scenes`` themselves (to
    make more captions of *these* images, e.g. ``world.swap_captions``). ``seed`` is the
    world's seed, fixed at 0 so that the course's models share one world whatever
    ``TUTORLIB_SEED`` is."""
    cfg = training_config(split, n, seed)
    ds = world.load_world(split, n=cfg["n"], modalities=MODALITIES, seed=cfg["seed"])
    t = world.tensors(ds, ["image", "caption", "partial", "caption_spec", "partial_spec"])
    tok = world.Tokenizer()
    scenes = world.scenes_of(ds)
    return {"image": t["image"], "full_ids": tok(t["caption"]), "partial_ids": tok(t["partial"]),
            "full_spec": t["caption_spec"], "partial_spec": t["partial_spec"],
            "attrs": world.scene_attributes(scenes), "scenes": scenes,
            "caption": t["caption"], "partial": t["partial"]}


def clip_batches(data: dict, batch_size: int | None = None, partial_frac: float = 0.5,
                 seed: int = 0):
    """A ``batches(step)`` function for ``train.fit``: random scenes, each with its full
    caption or (with probability ``partial_frac``) its partial caption, and the soft
    target matrix ``[B, B]``: ``targets[i, j]`` is True when scene i satisfies caption j."""
    batch_size = (settings().clip_batch_size if batch_size is None
                  else _validate.positive_int("batch_size", batch_size))
    if not 0.0 <= partial_frac <= 1.0:
        raise ValueError(f"partial_frac: got {partial_frac!r}, expected a number in [0, 1]")
    g = torch.Generator().manual_seed(get_seed(seed))
    n = len(data["image"])

    def batches(step):
        idx = torch.randint(n, (batch_size,), generator=g)
        part = torch.rand(batch_size, generator=g) < partial_frac
        ids = torch.where(part[:, None], data["partial_ids"][idx], data["full_ids"][idx])
        spec = torch.where(part[:, None], data["partial_spec"][idx], data["full_spec"][idx])
        return world.images_float(data["image"][idx]), ids, world.matches(data["attrs"][idx], spec)
    return batches


