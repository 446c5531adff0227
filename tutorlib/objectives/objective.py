"""What fine-tuning minimises, and what each step must compute for it.

``pretrained.finetune`` hands its objective one ``Batch`` per step and calls ``objective.loss``
on it. A lesson's extra is a small ``Objective``: the loss, and which extras of the batch it
reads (soft targets, hard-negative captions, token outputs, two views of each image), so that
the loop computes only those:

    Objective()                                    # CLIP's loss (lesson 01's recipe)
    Objective(my_loss, soft_targets=True)          # lesson 02: every caption a scene satisfies
    Objective(swap_loss, negatives=(ids, valid))   # lesson 02: a swapped twin per caption
    slip(1.0)                                      # lesson 04: SLIP's image-image term added
    finegrained.filip_objective(keep=0.25)         # lesson 07: FILIP on the token outputs
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..core import _validate
from . import losses


@dataclass
class Batch:
    """One fine-tuning step's embeddings ``[B, d]`` and the extras its objective asked for."""
    image: torch.Tensor
    text: torch.Tensor
    logit_scale: torch.Tensor
    targets: torch.Tensor | None = None        # [B, B]: scene i satisfies caption j
    negatives: torch.Tensor | None = None      # [K, d]: the batch's valid extra captions
    image_tokens: torch.Tensor | None = None   # [B, P, d]: projected patch outputs
    text_tokens: torch.Tensor | None = None    # [B, L, d]: projected word outputs
    text_mask: torch.Tensor | None = None      # [B, L]: True for real words
    views: tuple | None = None                 # two [B, d] embeddings of partial images


def clip(b: Batch) -> torch.Tensor:
    """CLIP's symmetric loss on the batch, with its soft targets when it has them."""
    return losses.clip_loss(b.image, b.text, b.logit_scale, targets=b.targets)


@dataclass(frozen=True)
class Objective:
    """``loss(batch)`` and what the batch must carry for it: ``soft_targets`` (``Batch.targets``,
    ``world.matches`` of the batch: the data needs ``attrs`` and ``full_spec``), ``negatives``
    (``(ids [N, L], valid [N])``: the valid extra captions of the batch's scenes, run through the
    text tower), ``tokens`` (the token outputs) and ``keep_patches`` (two views of each image
    keeping the class token and that fraction of its patch tokens at the first trained block)."""
    loss: Callable[[Batch], torch.Tensor] = clip
    soft_targets: bool = False
    negatives: tuple | None = None
    tokens: bool = False
    keep_patches: float | None = None

    def __post_init__(self):
        if not callable(self.loss):
            raise ValueError(f"loss: got {type(self.loss).__name__}, "
                             "expected a function of a Batch")
        if self.negatives is not None:
            if not isinstance(self.negatives, tuple) or len(self.negatives) != 2:
                raise ValueError("negatives: expected a pair (ids [N, L], valid [N])")
            ids, valid = self.negatives
            _validate.tensor("negatives[0]", ids, 2, floating=False)
            _validate.tensor("negatives[1]", valid, 1, floating=False)
            _validate.same_rows("negatives[0]", ids, "negatives[1]", valid)
        if self.keep_patches is not None and not 0.0 < float(self.keep_patches) < 1.0:
            raise ValueError(f"keep_patches: got {self.keep_patches!r}, expected a fraction "
                             "in (0, 1)")


def slip(weight: float, keep_patches: float = 0.5, soft_targets: bool = False) -> Objective:
    """CLIP's loss plus SLIP's image-image term (Mu et al. 2022): two views of each image,
    ``+ weight * clip_loss(view1, view2, ln 10)``. ``weight = 0`` is CLIP's loss alone (no view
    is drawn)."""
    weight = _validate.non_negative_number("weight", weight)
    if weight == 0:
        return Objective(soft_targets=soft_targets)

    def loss(b: Batch) -> torch.Tensor:
        return clip(b) + weight * losses.clip_loss(*b.views, math.log(10.0))
    return Objective(loss, soft_targets=soft_targets, keep_patches=keep_patches)
