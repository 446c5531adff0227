"""CWCL's targets for lesson 08 (Srinivasa et al. 2023): the weights w_ij that say how much
caption j should count as a match of scene i, from a frozen encoder's embedding (the paper),
from the world's attributes, or from the world's true matches (the oracles the lesson
compares them with); and where the loss's minimum leaves the true partner.

    w = cwcl_targets(text_features)                  # [N, N]: ½ cos + ½, diagonal 1
    w = match_weights(attrs, full_spec)              # [N, N]: 1 where caption j is true of scene i
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate
from . import losses
from .. import world

CWCL_SOURCES = ("text", "image", "own", "attributes", "matches")
CWCL_FORMS = ("paper", "cosine")


def attribute_vectors(attrs: torch.Tensor) -> torch.Tensor:
    """The world's ground truth as a vector per scene: ``attrs`` ``[N, 2, 4]`` (shape, colour,
    size, position of each object, -1 where absent) -> ``[N, A]`` float counts, one entry per
    attribute value (A = 6 + 6 + 2 + 9 in the default world), summed over the scene's objects.
    The cosine of two rows is the scenes' true attribute overlap: 1 for scenes that share
    every attribute, 0 for scenes that share none."""
    _validate.tensor("attrs", attrs, 3, floating=False)
    if attrs.shape[1:] != (2, 4):
        raise ValueError(f"attrs: got shape {tuple(attrs.shape)}, expected [N, 2, 4]")
    parts = []
    for j, name in enumerate(("shape", "colour", "size", "position")):
        a, k = attrs[:, :, j], len(world.ATTRIBUTES[name])
        parts.append((F.one_hot(a.clamp_min(0), k) * (a >= 0)[..., None]).sum(1))
    return torch.cat(parts, 1).float()


def cwcl_targets(source_emb: torch.Tensor, centre: bool = False, form: str = "paper") -> torch.Tensor:
    """CWCL's weights ``[N, N]`` from ``source_emb`` ``[N, d]``: ``form="paper"`` is
    ``losses.cwcl_weights`` (½ cos + ½, Eq. 3); ``form="cosine"`` (not in the paper) the cosine
    itself clamped to [0, 1], so that an unrelated item (cos <= 0) gets no weight. Diagonal 1."""
    _validate.one_of("form", form, CWCL_FORMS)
    w = losses.cwcl_weights(source_emb, centre)
    return w if form == "paper" else (2 * w - 1).clamp_min(0).fill_diagonal_(1.0)


def match_weights(attrs: torch.Tensor, full_spec: torch.Tensor, form: str = "cosine") -> torch.Tensor:
    """The retrieval ground truth as CWCL weights ``[N, N]``: w_ij = 1 if caption j (``full_spec``
    ``[N, 9]``) is true of scene i (``attrs`` ``[N, 2, 4]``; ``world.matches``), else 0, diagonal
    1; ``form="paper"`` maps it through ½ w + ½ as Eq. 3 maps a cosine. Rows are scenes."""
    _validate.one_of("form", form, CWCL_FORMS)
    w = world.matches(attrs, full_spec).float()
    return (w if form == "cosine" else w / 2 + 0.5).fill_diagonal_(1.0)


def optimum_margin(weights: torch.Tensor) -> dict[str, float]:
    """Where CWCL's loss is at its minimum, each row's softmax equals its target
    w_ij / Σ_j w_ij. With ``weights`` ``[N, N]`` (w_ii = 1 >= w_ij), the true partner is then
    still the top choice; how far ahead, averaged over rows: ``"weight margin"`` 1 - max_{j≠i}
    w_ij, ``"share margin"`` that divided by Σ_j w_ij (the probabilities' gap), ``"true share"``
    1 / Σ_j w_ij, and ``"ties"``, the fraction of rows where another item has w_ij = 1."""
    _validate.tensor("weights", weights, 2)
    if weights.shape[0] != weights.shape[1] or len(weights) < 2:
        raise ValueError(f"weights: got shape {tuple(weights.shape)}, expected [N, N], N >= 2")
    off = weights.masked_fill(torch.eye(len(weights), dtype=torch.bool), float("-inf"))
    gap, total = 1 - off.max(1).values, weights.sum(1)
    return {"weight margin": gap.mean().item(), "share margin": (gap / total).mean().item(),
            "true share": (1 / total).mean().item(), "ties": (gap <= 1e-6).float().mean().item()}


def batch_weights(source: str, x_img: torch.Tensor, x_txt: torch.Tensor, truth=(),
                  centre: bool = False, form: str = "paper"):
    """CWCL's (image->text, text->image) weights ``[B, B]`` for one batch, by ``source`` in
    ``CWCL_SOURCES``: ``"text"``, ``"image"`` or ``"own"`` (each direction its own side) from
    the frozen features ``x_img`` ``[B, w]`` and ``x_txt`` ``[B, 384]``; ``"attributes"``
    (attribute overlap) and ``"matches"`` (which caption is true) from ``truth``, the batch's
    ``[attrs]`` or ``[attrs, full_spec]``."""
    _validate.one_of("source", source, CWCL_SOURCES)
    if source == "matches":
        w = match_weights(*truth, form)
        return w, w.T.contiguous()
    if source == "attributes":
        w = cwcl_targets(attribute_vectors(truth[0]), centre, form)
        return w, w
    w_img = cwcl_targets(x_img, centre, form) if source in ("image", "own") else None
    w_txt = cwcl_targets(x_txt, centre, form) if source in ("text", "own") else None
    return {"text": (w_txt, w_txt), "image": (w_img, w_img), "own": (w_img, w_txt)}[source]
